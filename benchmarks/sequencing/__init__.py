"""What a user's `peptide-losses sequence` run gives on the shipped real sets, and how fast."""
