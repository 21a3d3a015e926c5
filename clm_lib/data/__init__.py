"""Data: landing files -> versioned Delta tables (raw, curated, quarantine, replay, eval).

``records`` defines the rows, ``landing`` opens untrusted landing files without following anything,
``encoding`` decides how text is decoded, ``readers`` reads files without losing a line, ``lake`` owns the
Delta tables, ``ingest`` is the step that ties them together with the GX suite (:mod:`clm_lib.validation`).
"""
