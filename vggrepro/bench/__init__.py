"""Benchmarks: throughput and MFU of training and dense evaluation, and the GPU check (what the gpu
book asks of one GPU, measured in one short window)."""
