;; A WASI preview 1 command: prints a greeting and its first argument, exits 0.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from wasm")
  (data (i32.const 96) "\n")
  (data (i32.const 100) ", ")

  ;; write(ptr, len) to stdout through the iovec at 0.
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func (export "_start")
    (local $arg i32)
    (call $write (i32.const 64) (i32.const 15))
    ;; argv pointers at 1024, strings at 2048; argv[1], when given, is greeted.
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.gt_u (i32.load (i32.const 16)) (i32.const 1))
      (then
        (drop (call $args_get (i32.const 1024) (i32.const 2048)))
        (local.set $arg (i32.load (i32.const 1028)))
        (call $write (i32.const 100) (i32.const 2))
        (call $write (local.get $arg) (call $strlen (local.get $arg)))))
    (call $write (i32.const 96) (i32.const 1))))
