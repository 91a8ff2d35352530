/**
 * Local text to netascii (RFC 764 as used by RFC 1350): LF becomes CR LF and
 * a bare CR becomes CR NUL, the same mapping tftpd-hpa applies. Byte-local, so
 * chunks convert independently and the output can be streamed.
 */
export function toNetascii(input: Buffer): Buffer {
  let extra = 0;
  for (let i = input.indexOf(10); i >= 0; i = input.indexOf(10, i + 1)) extra++;
  for (let i = input.indexOf(13); i >= 0; i = input.indexOf(13, i + 1)) extra++;
  if (extra === 0) return input;
  const out = Buffer.allocUnsafe(input.length + extra);
  let o = 0;
  let start = 0;
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    if (c !== 10 && c !== 13) continue;
    o += input.copy(out, o, start, i);
    out[o++] = 13;
    out[o++] = c === 10 ? 10 : 0;
    start = i + 1;
  }
  input.copy(out, o, start);
  return out;
}
