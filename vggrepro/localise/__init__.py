"""Appendix A, localisation: box geometry, images with boxes, the SCR/PCR regressors fine-tuned
through the one training loop, dense application, and the two test protocols of Tables 8 and 9."""
