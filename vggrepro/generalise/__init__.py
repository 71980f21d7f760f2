"""Appendix B, deep features on other data: penultimate features at several scales, their
aggregation, and linear SVMs scored by mean average precision."""
