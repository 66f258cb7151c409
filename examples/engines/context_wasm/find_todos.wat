;; context_wasm.find_todos as a WASI preview-1 command, written by hand in
;; WebAssembly text. It speaks mex-engine-1: the request (JSON) on stdin, the
;; completion on stdout, outputs under the /out preopen (fd 4), inputs under
;; the /in preopen (fd 3, read-only).
;;
;; It reads the first input the request names (the file to scan), finds the
;; lines containing "TODO" and writes todos.json (a file with a NUL byte is
;; not text: CTX_QUERY_ERROR):
;;   {"count":N,"lines":[l1,l2,...]}   (1-based line numbers, ascending)
;; No clock, no randomness, no floating point: the output depends on the
;; input bytes only (D3).
;;
;; Build: the `wat` crate (see crates/mex-engine-wasm/tests/example.rs, which
;; checks that find_todos.wasm is this file compiled).
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))

  ;; Layout: 0..64 iovecs and results; 64..96 digits; 1024.. strings;
  ;; 64 KiB request; 128 KiB..1.125 MiB input; 2 MiB.. the line list.
  (memory (export "memory") 64)
  (global $REQ i32 (i32.const 65536))
  (global $REQ_CAP i32 (i32.const 65536))
  (global $FILE i32 (i32.const 131072))
  (global $FILE_CAP i32 (i32.const 1048576))
  (global $OUT i32 (i32.const 2097152))

  (data (i32.const 1024) "\"/in/") ;; S_IN, 5 bytes
  (data (i32.const 1040) "todos.json") ;; S_OUTNAME, 10 bytes
  (data (i32.const 1056) "TODO") ;; S_TODO, 4 bytes
  (data (i32.const 1064) "{\"count\":") ;; S_HDR1, 9 bytes
  (data (i32.const 1080) ",\"lines\":[") ;; S_HDR2, 10 bytes
  (data (i32.const 1096) "]}\n") ;; S_TAIL, 3 bytes
  (data (i32.const 1200) "{\"protocol\":\"mex-engine-1\",\"status\":\"succeeded\",\"outputs\":[{\"file\":\"todos.json\",\"kind\":\"artifact.dataset\",\"media_type\":\"application/json\"}],\"environment\":{\"source\":\"find_todos.wat\"}}\n") ;; S_OK, 183 bytes
  (data (i32.const 1600) "{\"protocol\":\"mex-engine-1\",\"status\":\"failed\",\"error\":{\"code\":\"CTX_QUERY_ERROR\",\"message\":\"the request names no input under /in; pass the file to scan as source_ref\"}}\n") ;; S_NOINPUT, 167 bytes
  (data (i32.const 1900) "{\"protocol\":\"mex-engine-1\",\"status\":\"failed\",\"error\":{\"code\":\"CTX_IO_ERROR\",\"message\":\"the input could not be opened or read\"}}\n") ;; S_IOERR, 128 bytes
  (data (i32.const 2200) "{\"protocol\":\"mex-engine-1\",\"status\":\"failed\",\"error\":{\"code\":\"CTX_QUERY_ERROR\",\"message\":\"the input is larger than 1 MiB; split it\"}}\n") ;; S_BIG, 134 bytes
  (data (i32.const 2500) "{\"protocol\":\"mex-engine-1\",\"status\":\"failed\",\"error\":{\"code\":\"CTX_IO_ERROR\",\"message\":\"todos.json could not be written in the output directory\"}}\n") ;; S_OUTERR, 146 bytes

  (data (i32.const 2800) "{\"protocol\":\"mex-engine-1\",\"status\":\"failed\",\"error\":{\"code\":\"CTX_QUERY_ERROR\",\"message\":\"the input is not text (it contains a NUL byte); pass a text file\"}}\n") ;; S_BINARY, 158 bytes

  ;; Write all of [ptr, ptr+len) to fd; 0 on success.
  (func $write_all (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (return (i32.const 1))))
        (if (i32.eqz (i32.load (i32.const 8))) (then (return (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $more)))
    (i32.const 0))

  ;; Print a completion on stdout and end.
  (func $say (param $ptr i32) (param $len i32)
    (drop (call $write_all (i32.const 1) (local.get $ptr) (local.get $len))))

  ;; Read fd into [ptr, ptr+cap) until end of file; the byte count, or -1
  ;; on an error, or cap+1 when there is more than cap.
  (func $read_all (param $fd i32) (param $ptr i32) (param $cap i32) (result i32)
    (local $got i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (local.get $ptr) (local.get $got)))
      (i32.store (i32.const 4) (i32.sub (i32.add (local.get $cap) (i32.const 1)) (local.get $got)))
      (if (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (return (i32.const -1))))
      (if (i32.load (i32.const 8))
        (then
          (local.set $got (i32.add (local.get $got) (i32.load (i32.const 8))))
          (br_if $more (i32.le_u (local.get $got) (local.get $cap))))))
    (local.get $got))

  ;; Whether [a, a+n) equals [b, b+n).
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $no
      (loop $next
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; Decimal digits of n at dst; their count.
  (func $itoa (param $n i32) (param $dst i32) (result i32)
    (local $len i32) (local $i i32) (local $t i32)
    ;; digits backwards into 64..96, then copied forwards
    (local.set $i (i32.const 96))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (local.get $i) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (local.set $len (i32.sub (i32.const 96) (local.get $i)))
    (memory.copy (local.get $dst) (local.get $i) (local.get $len))
    (local.get $len))

  (func (export "_start")
    (local $req_len i32) (local $p i32) (local $name i32) (local $name_len i32)
    (local $fd i32) (local $file_len i32) (local $line i32)
    (local $hit i32) (local $count i32) (local $out i32) (local $hdr i32)

    ;; 1. The request.
    (local.set $req_len (call $read_all (i32.const 0) (global.get $REQ) (global.get $REQ_CAP)))
    (if (i32.gt_u (local.get $req_len) (global.get $REQ_CAP))
      (then (call $say (i32.const 1600) (i32.const 167)) (return)))

    ;; 2. The first "/in/<name>" it names.
    (local.set $p (global.get $REQ))
    (block $found
      (loop $scan
        (if (i32.gt_u (i32.add (local.get $p) (i32.const 5))
                      (i32.add (global.get $REQ) (local.get $req_len)))
          (then (call $say (i32.const 1600) (i32.const 167)) (return)))
        (br_if $found (call $eq (local.get $p) (i32.const 1024) (i32.const 5)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $scan)))
    (local.set $name (i32.add (local.get $p) (i32.const 5)))
    (local.set $p (local.get $name))
    (loop $to_quote
      (if (i32.ge_u (local.get $p) (i32.add (global.get $REQ) (local.get $req_len)))
        (then (call $say (i32.const 1600) (i32.const 167)) (return)))
      (if (i32.ne (i32.load8_u (local.get $p)) (i32.const 34))
        (then (local.set $p (i32.add (local.get $p) (i32.const 1))) (br $to_quote))))
    (local.set $name_len (i32.sub (local.get $p) (local.get $name)))

    ;; 3. The input, from the /in preopen (fd 3), read-only.
    (if (call $path_open (i32.const 3) (i32.const 0) (local.get $name) (local.get $name_len)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 12))
      (then (call $say (i32.const 1900) (i32.const 128)) (return)))
    (local.set $file_len (call $read_all (i32.load (i32.const 12)) (global.get $FILE) (global.get $FILE_CAP)))
    (if (i32.lt_s (local.get $file_len) (i32.const 0))
      (then (call $say (i32.const 1900) (i32.const 128)) (return)))
    (if (i32.gt_u (local.get $file_len) (global.get $FILE_CAP))
      (then (call $say (i32.const 2200) (i32.const 134)) (return)))

    ;; 4. Lines containing TODO, as a comma-separated list at OUT.
    (local.set $out (global.get $OUT))
    (local.set $line (i32.const 1))
    (local.set $p (global.get $FILE))
    (block $eof
      (loop $byte
        (if (i32.or
              (i32.ge_u (local.get $p) (i32.add (global.get $FILE) (local.get $file_len)))
              (i32.eq (i32.load8_u (local.get $p)) (i32.const 10)))
          (then
            (if (local.get $hit)
              (then
                (if (local.get $count)
                  (then
                    (i32.store8 (local.get $out) (i32.const 44))
                    (local.set $out (i32.add (local.get $out) (i32.const 1)))))
                (local.set $out (i32.add (local.get $out) (call $itoa (local.get $line) (local.get $out))))
                (local.set $count (i32.add (local.get $count) (i32.const 1)))))
            (br_if $eof (i32.ge_u (local.get $p) (i32.add (global.get $FILE) (local.get $file_len))))
            (local.set $hit (i32.const 0))
            (local.set $line (i32.add (local.get $line) (i32.const 1))))
          (else
            (if (i32.eqz (i32.load8_u (local.get $p)))
              (then (call $say (i32.const 2800) (i32.const 158)) (return)))
            (if (i32.le_u (i32.add (local.get $p) (i32.const 4))
                          (i32.add (global.get $FILE) (local.get $file_len)))
              (then
                (if (call $eq (local.get $p) (i32.const 1056) (i32.const 4))
                  (then (local.set $hit (i32.const 1))))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $byte)))

    ;; 5. todos.json in the /out preopen (fd 4): created, truncated.
    (if (call $path_open (i32.const 4) (i32.const 0)
          (i32.const 1040) (i32.const 10)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 12))
      (then (call $say (i32.const 2500) (i32.const 146)) (return)))
    (local.set $fd (i32.load (i32.const 12)))
    (local.set $hdr (i32.const 256))
    (memory.copy (local.get $hdr) (i32.const 1064) (i32.const 9))
    (local.set $p (i32.add (local.get $hdr) (i32.const 9)))
    (local.set $p (i32.add (local.get $p) (call $itoa (local.get $count) (local.get $p))))
    (memory.copy (local.get $p) (i32.const 1080) (i32.const 10))
    (local.set $p (i32.add (local.get $p) (i32.const 10)))
    (if (i32.or
          (i32.or
            (call $write_all (local.get $fd) (local.get $hdr) (i32.sub (local.get $p) (local.get $hdr)))
            (call $write_all (local.get $fd) (global.get $OUT) (i32.sub (local.get $out) (global.get $OUT))))
          (call $write_all (local.get $fd) (i32.const 1096) (i32.const 3)))
      (then (call $say (i32.const 2500) (i32.const 146)) (return)))

    ;; 6. The completion.
    (call $say (i32.const 1200) (i32.const 183))))
