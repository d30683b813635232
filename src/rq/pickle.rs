//! Python pickle (protocols 2–5) to and from [`PyValue`], without running code (rq-wire.md §11).
