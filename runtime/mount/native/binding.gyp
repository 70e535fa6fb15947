{
  "targets": [
    {
      "target_name": "fuse_extras",
      "sources": ["fuse-extras.c"],
      "cflags": ["<!@(pkg-config fuse --cflags)", "-Wall", "-Wextra"],
      "libraries": ["-lfuse", "-ldl", "-pthread"]
    }
  ]
}
