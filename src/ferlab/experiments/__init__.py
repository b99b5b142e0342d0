"""Thesis section 5 as a reproducible suite: configs/experiments/*.yaml, a resumable runner
and a results table that puts our numbers beside the thesis's reported ones."""
