"""Imports with original times: our transcripts, ChatGPT exports, JSON lists.

    formats.py   the file → records (sniffing, the JSON list, our transcripts)
    chatgpt.py   ChatGPT's conversations.json → records
    models.py    MemoryImport: one import job and its counts
    services.py  start an import (in the request or as a job) and run the job
    upkeep.py    periodic: send lost or abandoned jobs again, delete left files
    selectors.py the user's imports

Kept free of imports here: memory.models imports memory.imports.models.
"""
