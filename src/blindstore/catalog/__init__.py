"""The catalog: the sovereign namespace and the commit point.

``base`` holds the records and the ``Catalog`` protocol; ``sql.SqlCatalog`` implements it on
SQLite or PostgreSQL. Import the implementation from its module: importing this package does not
load SQLAlchemy.
"""
