/**
 * TFTP wire format (RFC 1350, OACK from RFC 2347). Pure functions: decoding
 * never throws, because every byte here comes from an untrusted network peer.
 */

export const Opcode = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;

export const ErrorCode = {
  undefined: 0,
  notFound: 1,
  accessViolation: 2,
  diskFull: 3,
  illegalOperation: 4,
  unknownTid: 5,
  fileExists: 6,
  noSuchUser: 7,
  optionRefused: 8,
} as const;

/** Option names are lower-cased; values kept as sent. Request order is kept. */
export type OptionList = readonly (readonly [name: string, value: string])[];

export interface Request {
  readonly op: 'rrq' | 'wrq';
  /** Raw bytes: the name's encoding is checked later, where a refusal can be answered. */
  readonly filename: Buffer;
  /** Lower-cased. */
  readonly mode: string;
  readonly options: OptionList;
}

export type Packet =
  | Request
  | { readonly op: 'data'; readonly block: number; readonly data: Buffer }
  | { readonly op: 'ack'; readonly block: number }
  | { readonly op: 'error'; readonly code: number; readonly message: string }
  | { readonly op: 'oack'; readonly options: OptionList }
  | { readonly op: 'unknown'; readonly opcode: number }
  | { readonly op: 'malformed'; readonly reason: string };

export function decodePacket(buf: Buffer): Packet {
  if (buf.length < 2) return { op: 'malformed', reason: 'shorter than an opcode' };
  const opcode = buf.readUInt16BE(0);
  switch (opcode) {
    case Opcode.RRQ:
    case Opcode.WRQ:
      return decodeRequest(buf, opcode === Opcode.RRQ ? 'rrq' : 'wrq');
    case Opcode.DATA:
      if (buf.length < 4) return { op: 'malformed', reason: 'DATA without a block number' };
      return { op: 'data', block: buf.readUInt16BE(2), data: buf.subarray(4) };
    case Opcode.ACK:
      // Longer ACKs are accepted: some boot ROMs pad their packets.
      if (buf.length < 4) return { op: 'malformed', reason: 'ACK without a block number' };
      return { op: 'ack', block: buf.readUInt16BE(2) };
    case Opcode.ERROR: {
      if (buf.length < 4) return { op: 'malformed', reason: 'ERROR without a code' };
      const end = buf.indexOf(0, 4);
      return { op: 'error', code: buf.readUInt16BE(2), message: buf.toString('latin1', 4, end < 0 ? buf.length : end) };
    }
    case Opcode.OACK:
      return { op: 'oack', options: decodeOptions(splitStrings(buf, 2)) };
    default:
      return { op: 'unknown', opcode };
  }
}

function decodeRequest(buf: Buffer, op: 'rrq' | 'wrq'): Packet {
  const nameEnd = buf.indexOf(0, 2);
  if (nameEnd < 0) return { op: 'malformed', reason: 'file name not NUL-terminated' };
  const modeEnd = buf.indexOf(0, nameEnd + 1);
  if (modeEnd < 0) return { op: 'malformed', reason: 'mode missing or not NUL-terminated' };
  return {
    op,
    filename: buf.subarray(2, nameEnd),
    mode: buf.toString('latin1', nameEnd + 1, modeEnd).toLowerCase(),
    options: decodeOptions(splitStrings(buf, modeEnd + 1)),
  };
}

/**
 * NUL-terminated strings from `start`; an unterminated tail is dropped, as a
 * truncated option cannot be trusted, but the request itself is still good.
 */
function splitStrings(buf: Buffer, start: number): string[] {
  const out: string[] = [];
  let pos = start;
  while (pos < buf.length) {
    const end = buf.indexOf(0, pos);
    if (end < 0) break;
    out.push(buf.toString('latin1', pos, end));
    pos = end + 1;
  }
  return out;
}

function decodeOptions(strings: string[]): OptionList {
  const options: [string, string][] = [];
  for (let i = 0; i < strings.length; i++) {
    const name = strings[i] ?? '';
    // Empty strings are padding (some ROMs zero-fill requests); skip them one at a time.
    if (name === '') continue;
    const value = strings[i + 1];
    if (value === undefined) break;
    options.push([name.toLowerCase(), value]);
    i++;
  }
  return options;
}

export function encodeRequest(
  op: 'rrq' | 'wrq',
  filename: string | Buffer,
  mode: string,
  options: OptionList = [],
): Buffer {
  const parts: Buffer[] = [u16(op === 'rrq' ? Opcode.RRQ : Opcode.WRQ), Buffer.from(filename), NUL, Buffer.from(mode, 'latin1'), NUL];
  for (const [name, value] of options) parts.push(Buffer.from(name, 'latin1'), NUL, Buffer.from(value, 'latin1'), NUL);
  return Buffer.concat(parts);
}

/** The 4 bytes in front of a DATA payload; block numbers wrap at 65536. */
export function dataHeader(block: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt16BE(Opcode.DATA, 0);
  b.writeUInt16BE(block & 0xffff, 2);
  return b;
}

export function encodeData(block: number, data: Buffer): Buffer {
  return Buffer.concat([dataHeader(block), data]);
}

export function encodeAck(block: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt16BE(Opcode.ACK, 0);
  b.writeUInt16BE(block & 0xffff, 2);
  return b;
}

export function encodeError(code: number, message: string): Buffer {
  // Messages are ours and ASCII; latin1 keeps one byte per character whatever happens.
  return Buffer.concat([u16(Opcode.ERROR), u16(code), Buffer.from(message, 'latin1'), NUL]);
}

export function encodeOack(options: OptionList): Buffer {
  const parts: Buffer[] = [u16(Opcode.OACK)];
  for (const [name, value] of options) parts.push(Buffer.from(name, 'latin1'), NUL, Buffer.from(value, 'latin1'), NUL);
  return Buffer.concat(parts);
}

const NUL = Buffer.from([0]);

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n, 0);
  return b;
}
