"""The code samples of README.rst and docs/, run: one module per page or family of pages (tests/support/doc_pages.py)."""
