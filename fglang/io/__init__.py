"""Files in and out: atomic writes, sealed HDF5 files read without hanging (sealed.py), and pose-graph
readers (g2o, TORO).

Below the runtime and the pictures, above only ``fglang.errors``: anything
that writes a user's file goes through here, so no command can leave half a
file behind. Nothing here imports JAX.
"""

from fglang.io.pose_graph import read_pose_graph

__all__ = ["read_pose_graph"]
