"""`mombot eval`: question sets, answer checking, the run and its report."""
