"""Thesis section 5 as a reproducible suite: one config per row (``configs/*.yaml`` here, package
data), a resumable runner and a results table that puts our numbers beside the thesis's
reported ones (``thesis_reported.json``)."""
