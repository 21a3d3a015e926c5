"""Data: landing files -> versioned Delta tables (raw, curated, quarantine, replay, eval).

``records`` defines the rows, ``readers`` reads files without losing a line, ``lake`` owns the Delta
tables, ``ingest`` is the step that ties them together with the GX suite (:mod:`clm_lib.validation`).
"""
