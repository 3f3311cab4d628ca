{
  "targets": [
    {
      "target_name": "hsmfleet_fs",
      "sources": ["native/dirscan.c", "native/hsmbatch.c", "native/readfile.c", "native/writehash.c", "native/beneath.c", "native/inotify.c", "native/smallfile.c", "native/pwrite-runs.c", "native/hugebuf.c", "native/mtimes.c", "native/batch-tally.c", "native/batch-arena.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "cflags!": ["-O3"],
      "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "2" }
    },
    {
      "target_name": "hsmfleet_crc64",
      "sources": ["native/crc64.c", "native/pwrite-runs.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "cflags!": ["-O3"],
      "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "2" }
    }
  ]
}
