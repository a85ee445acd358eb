"""``python -m classic_control compare``: a multi-seed sweep with honest statistics and a report.

``sweep`` runs the (env, algo, seed) grid in worker processes and writes one
record per finished run; ``stats`` holds the across-seed statistics;
``report`` rebuilds the Markdown table and plots from the records alone;
``baselines_sb3`` runs Stable-Baselines3 under the same budget and evaluation.
"""
