"""vggrepro: a reproducible companion to Simonyan & Zisserman (2014), "Very Deep Convolutional
Networks for Large-Scale Image Recognition". One module per idea; see the README for the map."""

from .core import kernels

kernels.pin()  # before any torch operation: each CPU library reads its vector path once, at first use

__version__ = "0.1.0"
