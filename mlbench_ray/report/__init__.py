"""Tables, plots, HTML report, comparisons and MLPerf-style logs made from stored results."""
