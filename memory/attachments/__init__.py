"""Attachments: uploaded documents (text, Markdown, HTML, PDF) kept in object
storage, their text chunked into memories.

    models.py      the Attachment row (imported by memory/models.py, which registers it)
    extract.py     sniffing the type from the bytes; extracting the text
    chunking.py    splitting text into memory-sized chunks
    services.py    create and delete: object, row and chunks together
    selectors.py   reads, scoped by user

Import the modules themselves: this package is imported while memory.models
loads, so it re-exports nothing that imports memory.models.
"""
