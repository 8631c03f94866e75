"""Data: readers and writers for story and parallel records, the bundled corpus, validation, splits and subsets."""
