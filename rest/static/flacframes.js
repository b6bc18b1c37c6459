// FLAC frame headers in a stretch of a stem's bytes, found as common/flacindex.py finds them:
// sync code, reserved bits, channels, UTF-8 coded number, CRC-8; a false sync in the audio
// data is passed over by its CRC and by its number, which must be the one expected next.

const CRC8 = new Uint8Array(256).map((_, byte) => {
  let crc = byte;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  return crc;
});

// A frame's block size from its 4-bit code, and how many bytes after the number it took.
function blockSize(code, bytes, at) {
  if (code === 1) return [192, 0];
  if (code >= 2 && code <= 5) return [576 << (code - 2), 0];
  if (code === 6) return [bytes[at] + 1, 1];
  if (code === 7) return [((bytes[at] << 8) | bytes[at + 1]) + 1, 2];
  if (code >= 8) return [256 << (code - 8), 0];
  return null;
}

// {variable, number, size} of the frame header at `at`, or null where there is none.
export function frameHeader(bytes, at, channels) {
  if (at + 6 > bytes.length || bytes[at] !== 0xff || (bytes[at + 1] & 0xfe) !== 0xf8) return null;
  const sizeCode = bytes[at + 2] >> 4;
  const rateCode = bytes[at + 2] & 0x0f;
  const layout = bytes[at + 3] >> 4;
  if (rateCode === 15 || layout > 10 || ((bytes[at + 3] >> 1) & 7) === 3 || bytes[at + 3] & 1) {
    return null;
  }
  if ((layout < 8 ? layout + 1 : 2) !== channels) return null;
  let end = at + 4;
  const lead = bytes[end];
  let extra = 0;
  if (lead >= 0x80) {
    while (extra < 7 && lead & (0x40 >> extra)) extra += 1;
    if (extra === 0 || extra > 6) return null;
  }
  let number = lead & (extra ? 0x3f >> extra : 0x7f);
  for (let i = 1; i <= extra; i++) {
    const byte = bytes[end + i];
    if ((byte & 0xc0) !== 0x80) return null;
    number = number * 64 + (byte & 0x3f); // up to 36 bits: no bitwise operators
  }
  end += 1 + extra;
  const size = blockSize(sizeCode, bytes, end);
  if (!size) return null;
  end += size[1] + (rateCode === 12 ? 1 : rateCode === 13 || rateCode === 14 ? 2 : 0);
  if (end >= bytes.length) return null;
  let crc = 0;
  for (let i = at; i < end; i++) crc = CRC8[crc ^ bytes[i]];
  if (crc !== bytes[end]) return null;
  return { variable: Boolean(bytes[at + 1] & 1), number, size: size[0] };
}

// [{at, size}] of every frame in `bytes`, which begin with one.
export function findFrames(bytes, channels) {
  let header = frameHeader(bytes, 0, channels);
  if (!header) throw new Error("a stretch of the stem does not begin with a FLAC frame");
  const found = [{ at: 0, size: header.size }];
  let next = header.variable ? header.number + header.size : header.number + 1;
  for (let at = 1; at + 1 < bytes.length; at++) {
    if (bytes[at] !== 0xff || (bytes[at + 1] & 0xfe) !== 0xf8) continue;
    header = frameHeader(bytes, at, channels);
    if (!header || header.number !== next) continue;
    found.push({ at, size: header.size });
    next = header.variable ? header.number + header.size : header.number + 1;
  }
  return found;
}
