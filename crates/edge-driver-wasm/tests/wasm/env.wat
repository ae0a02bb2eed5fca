;; Writes its whole environment, as WASI hands it over (`K=V` entries each
;; ending in a NUL), after a CGI header: shows what a handler sees.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  ;; 0: iovec; 16: env count and size; 64: header; 1024: env pointers;
  ;; 8192: env strings.
  (memory (export "memory") 2)
  (data (i32.const 64) "content-type: text/plain\n\n")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 1024) (i32.const 8192)))
    (call $write (i32.const 64) (i32.const 26))
    (call $write (i32.const 8192) (i32.load (i32.const 20)))))
