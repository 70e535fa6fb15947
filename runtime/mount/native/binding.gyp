{
  "targets": [
    {
      "target_name": "fuse_locks",
      "sources": ["fuse-locks.c"],
      "cflags": ["<!@(pkg-config fuse --cflags)", "-Wall", "-Wextra"],
      "libraries": ["-lfuse", "-ldl", "-pthread"]
    }
  ]
}
