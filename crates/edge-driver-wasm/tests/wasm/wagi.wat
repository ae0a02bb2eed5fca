;; The test WAGI handler: examples/wasm/web.wat plus routes chosen by the
;; first letter of the path: /trap traps, /loop never ends, /mem grows its
;; memory without bound, /echo copies the request body back, /stderr also
;; writes a line to stderr.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  ;; 0: iovec; 16: env count and size; 4096: env pointers; 16384: env strings.
  (memory (export "memory") 4)
  (data (i32.const 256) "PATH_INFO=")
  (data (i32.const 320) "content-type: text/plain\n\nhello from wasm at ")
  (data (i32.const 400) "\n")
  (data (i32.const 448) "content-type: text/plain\n\n")
  (data (i32.const 480) "stderr from the handler\n")

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

  ;; Whether the string at $s starts with the $len bytes at $prefix.
  (func $starts_with (param $s i32) (param $prefix i32) (param $len i32) (result i32)
    (local $i i32)
    (block $no
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $len)) (then (return (i32.const 1))))
        (br_if $no (i32.ne
          (i32.load8_u (i32.add (local.get $s) (local.get $i)))
          (i32.load8_u (i32.add (local.get $prefix) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; The value of the env var whose "NAME=" is at $name, or 0.
  (func $getenv (param $name i32) (param $len i32) (result i32)
    (local $i i32) (local $p i32)
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.gt_u (i32.load (i32.const 16)) (i32.const 1024)) (then (return (i32.const 0))))
    (if (i32.gt_u (i32.load (i32.const 20)) (i32.const 245760)) (then (return (i32.const 0))))
    (drop (call $environ_get (i32.const 4096) (i32.const 16384)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.load (i32.const 16))))
        (local.set $p (i32.load (i32.add (i32.const 4096) (i32.shl (local.get $i) (i32.const 2)))))
        (if (call $starts_with (local.get $p) (local.get $name) (local.get $len))
          (then (return (i32.add (local.get $p) (local.get $len)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Copies stdin to stdout through the buffer at 65536.
  (func $echo
    (local $n i32)
    (call $write (i32.const 448) (i32.const 26))
    (loop $next
      (i32.store (i32.const 32) (i32.const 65536))
      (i32.store (i32.const 36) (i32.const 65536))
      (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 40)))
      (local.set $n (i32.load (i32.const 40)))
      (if (local.get $n)
        (then
          (call $write (i32.const 65536) (local.get $n))
          (br $next)))))

  (func (export "_start")
    (local $path i32) (local $route i32)
    (local.set $path (call $getenv (i32.const 256) (i32.const 10)))
    (if (local.get $path)
      (then (local.set $route (i32.load8_u (i32.add (local.get $path) (i32.const 1))))))
    ;; 't'
    (if (i32.eq (local.get $route) (i32.const 116)) (then unreachable))
    ;; 'l'
    (if (i32.eq (local.get $route) (i32.const 108)) (then (loop $forever (br $forever))))
    ;; 'm'
    (if (i32.eq (local.get $route) (i32.const 109))
      (then (loop $more (drop (memory.grow (i32.const 16))) (br $more))))
    ;; 'e'
    (if (i32.eq (local.get $route) (i32.const 101)) (then (call $echo) (return)))
    ;; 's'
    (if (i32.eq (local.get $route) (i32.const 115))
      (then
        (i32.store (i32.const 0) (i32.const 480))
        (i32.store (i32.const 4) (i32.const 24))
        (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))
    (call $write (i32.const 320) (i32.const 45))
    (if (local.get $path)
      (then (call $write (local.get $path) (call $strlen (local.get $path)))))
    (call $write (i32.const 400) (i32.const 1))))
