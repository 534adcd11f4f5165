"""The database under the history, the memory and the image jobs: engine, migrations, tables."""
