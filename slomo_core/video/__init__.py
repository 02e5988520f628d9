"""Video I/O through PyAV: probe (what a file declares, exact frame pts), decode (RGB frames with
their pts, chunk ranges), encode (RGB frames at caller-given pts), audio + mux (stitch parts,
carry the source's audio). No ffmpeg subprocess; import the submodules directly."""
