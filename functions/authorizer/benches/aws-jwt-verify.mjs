// Verifies the same ES256 tokens with aws-jwt-verify (the usual choice for Node
// authorizers), one thread, and prints {"per_sec": …, "us_each": …,
// "repeated_per_sec": …}: distinct tokens, then the first token over and over.
// usage: node aws-jwt-verify.mjs <tokens.json> <jwks.json> <issuer> <audience>
import { readFileSync } from "node:fs";
import { JwtVerifier } from "aws-jwt-verify";

const [tokensPath, jwksPath, issuer, audience] = process.argv.slice(2);
const tokens = JSON.parse(readFileSync(tokensPath, "utf8"));
const jwks = JSON.parse(readFileSync(jwksPath, "utf8"));
const verifier = JwtVerifier.create({ issuer, audience, jwksUri: "https://portcullis.invalid/.well-known/jwks.json" });
verifier.cacheJwks(jwks);
// Warm up the JIT and the key cache on a few tokens first, as a warm Lambda would be.
for (const t of tokens.slice(0, 200)) verifier.verifySync(t);
const start = process.hrtime.bigint();
for (const t of tokens) verifier.verifySync(t);
const ns = Number(process.hrtime.bigint() - start);
const again = process.hrtime.bigint();
for (let i = 0; i < tokens.length; i++) verifier.verifySync(tokens[0]);
const repeatedNs = Number(process.hrtime.bigint() - again);
console.log(JSON.stringify({
  per_sec: tokens.length / (ns / 1e9),
  us_each: ns / 1e3 / tokens.length,
  repeated_per_sec: tokens.length / (repeatedNs / 1e9),
}));
