"""Appendix B, deep features on other data: penultimate features (or a convolution's) at several
scales, their aggregation, and linear SVMs scored by mean average precision."""
