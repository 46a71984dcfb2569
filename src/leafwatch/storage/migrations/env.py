"""Alembic environment: runs migrations on the engine LeafWatch hands over."""

from alembic import context
from sqlalchemy import Engine, create_engine

from leafwatch.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    """Run the migrations online, on the engine given by the caller or built from the URL."""
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations()
