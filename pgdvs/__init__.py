"""PGDVS: pseudo-generalized dynamic view synthesis from a casual video (re-implementation).

Pipeline folders: ingest -> reconstruct -> render -> trajectories -> hub -> bench. Every stage is a function
over one :class:`pgdvs.scene.Scene`.
"""
__version__ = "0.1.0"
