"""Every command line: ``main`` dispatches ``vggrepro COMMAND``; each other module here holds one
command's flags and calls the library wings below it."""
