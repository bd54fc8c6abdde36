"""Files in and out: atomic writes (and, next, pose-graph readers).

Below the runtime and the pictures, above only ``fglang.errors``: anything
that writes a user's file goes through here, so no command can leave half a
file behind.
"""
