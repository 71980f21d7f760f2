"""The experiments that tie the wings to the book: the paper's tables as data, the grid of nets,
claims and their verdicts, the results page, the time budget, Appendix A's tables, and figures."""
