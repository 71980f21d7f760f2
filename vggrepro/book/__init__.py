"""The book as a whole: papermill runs of its chapters with live progress, the site, the twins."""
