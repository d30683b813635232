"""Stand-ins for the platform modules the original jobs import (server/app: config, db.session, core.storage,
core.token_budget + core.errors + db.models), built on the same libraries and constructed at the same points:

    config   pydantic-settings object built at import            (app.config)
    db       SQLAlchemy engine (psycopg2, pool_pre_ping) at import,
             a session factory; one session per unit of work    (app.db.session)
    storage  supabase imported at import; a client per download  (app.core.storage)
    budget   ORM row for workspace_daily_usage, reserve/commit/
             release under row locks                             (app.core.token_budget, errors, db.models)

Each job imports only the modules its original counterpart imports, so a forked RQ work horse pays the same
import and construction costs (extract: config, db, storage; index: config, db, budget).
"""
