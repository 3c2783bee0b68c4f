// Memory handed to C. A Uint8Array on its own ArrayBuffer keeps a stable address for as long as
// it is referenced; ptr() of a small inline typed array can go stale (shared bun-ffi notes,
// pitfall 1). Keep the returned array referenced for as long as C may use it.

export function ffiBytes(n: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(n));
}

/** A NUL-terminated UTF-8 string for C. */
export function cString(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  const buf = ffiBytes(bytes.length + 1);
  buf.set(bytes);
  return buf;
}
