//! The daily token budget in `workspace_daily_usage`, with the platform's reserve / commit / release
//! semantics under the row lock (upstream.md "Chunking and token budget").
//!
//! Reservations are made chunk by chunk in order, exactly as the platform's one-chunk-at-a-time loop
//! would make them, but for a whole batch in one transaction: the longest prefix that fits is
//! reserved, so the totals after success or exhaustion match the platform's.

use ::postgres::GenericClient;

use super::IngestError;

/// One workspace's budget for one UTC day.
pub struct Budget<'a> {
    pub workspace_id: &'a str,
    /// `YYYY-MM-DD`, fixed when the job starts.
    pub date: &'a str,
    pub limit: i64,
}

/// Outcome of [`Budget::reserve_prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// How many of the amounts were reserved (a prefix).
    pub count: usize,
    /// Their sum.
    pub tokens: i64,
    /// Row totals before the reservation (for the budget error).
    pub used: i64,
    pub reserved_before: i64,
}

impl Budget<'_> {
    /// Reserve `amounts[0]`, `amounts[1]`, ... while `used + reserved + amount <= limit`.
    pub fn reserve_prefix(
        &self,
        db: &mut impl GenericClient,
        amounts: &[i64],
    ) -> Result<Reserved, IngestError> {
        let mut tx = db.transaction()?;
        tx.execute(
            "INSERT INTO workspace_daily_usage (workspace_id, date, tokens_used, tokens_reserved) \
             VALUES ($1::text::uuid, $2::text::date, 0, 0) ON CONFLICT (workspace_id, date) DO NOTHING",
            &[&self.workspace_id, &self.date],
        )?;
        let rows = tx.query(
            "SELECT tokens_used, tokens_reserved FROM workspace_daily_usage \
             WHERE workspace_id = $1::text::uuid AND date = $2::text::date FOR UPDATE",
            &[&self.workspace_id, &self.date],
        )?;
        let row = rows
            .first()
            .ok_or_else(|| IngestError::Value("workspace_daily_usage row vanished".into()))?;
        let used: i64 = row.try_get(0)?;
        let reserved_before: i64 = row.try_get(1)?;
        let mut reserved = reserved_before;
        let mut count = 0;
        for &amount in amounts {
            if used.saturating_add(reserved).saturating_add(amount) > self.limit {
                break;
            }
            reserved += amount;
            count += 1;
        }
        if count > 0 {
            tx.execute(
                "UPDATE workspace_daily_usage SET tokens_reserved = $3, updated_at = NOW() \
                 WHERE workspace_id = $1::text::uuid AND date = $2::text::date",
                &[&self.workspace_id, &self.date, &reserved],
            )?;
        }
        tx.commit()?;
        Ok(Reserved {
            count,
            tokens: reserved - reserved_before,
            used,
            reserved_before,
        })
    }

    /// Move `tokens` from reserved to used (after their embeddings came back).
    pub fn commit(&self, db: &mut impl GenericClient, tokens: i64) -> Result<(), IngestError> {
        if tokens > 0 {
            db.execute(
                "UPDATE workspace_daily_usage SET tokens_reserved = GREATEST(tokens_reserved - $3, 0), \
                 tokens_used = tokens_used + $3, updated_at = NOW() \
                 WHERE workspace_id = $1::text::uuid AND date = $2::text::date",
                &[&self.workspace_id, &self.date, &tokens],
            )?;
        }
        Ok(())
    }

    /// Give back `tokens` that will not be used.
    pub fn release(&self, db: &mut impl GenericClient, tokens: i64) -> Result<(), IngestError> {
        if tokens > 0 {
            db.execute(
                "UPDATE workspace_daily_usage SET tokens_reserved = GREATEST(tokens_reserved - $3, 0), updated_at = NOW() \
                 WHERE workspace_id = $1::text::uuid AND date = $2::text::date",
                &[&self.workspace_id, &self.date, &tokens],
            )?;
        }
        Ok(())
    }
}
