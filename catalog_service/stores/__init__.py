"""Shop connectors, one module per platform behind the StoreConnector protocol (base.py).

Which connector serves a shop is decided in catalog_service/connectors.py, which reads the database;
nothing here does.
"""
