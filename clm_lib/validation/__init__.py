"""Validation: Great Expectations suites, kept as data in ``include/gx/``, decide what is curated."""
