#!/usr/bin/env node
// A real third-party OIDC provider for Legate's integration tests: it runs the
// npm package `oauth2-mock-server` (pinned in package.json) over HTTPS on
// 127.0.0.1. Only the glue below is ours; discovery, JWKS, the token endpoint
// and the JWT signing are the package's own code.
//
// PROTOCOL
//
//   node oidc-provider.mjs --cert CERT.pem --key KEY.pem [--alg ALG]
//
//   --cert, --key  PEM files of the TLS server certificate (it must name
//                  "localhost"; the tests' certificate names both localhost
//                  and 127.0.0.1) and its private key. Required.
//   --alg          signing algorithm of the one key generated at start:
//                  RS256 (default), RS384, RS512, PS256..PS512, ES256,
//                  ES384, ES512, EdDSA. The key gets a random `kid`.
//
//   stdout: once listening, exactly ONE line of JSON and nothing else, ever:
//             {"issuer":"https://localhost:<port>","port":<port>}
//           The port is ephemeral. The server listens on 127.0.0.1 only;
//           oauth2-mock-server names a server bound to a loopback address
//           `https://localhost:<port>`, and that exact string is both the
//           discovery document's `issuer` and the `iss` of every token.
//   stderr: diagnostics only.
//   exit:   when stdin reaches EOF (so the provider never outlives the process
//           that spawned it with a piped stdin), or on SIGTERM / SIGINT.
//           Start-up failure: a message on stderr and exit code 1.
//
//   Endpoints (all oauth2-mock-server's own):
//     GET  /.well-known/openid-configuration   discovery; jwks_uri = <issuer>/jwks
//     GET  /jwks                               public keys
//     POST /token                              mint a token, see below
//
//   Minting: POST <issuer>/token, application/x-www-form-urlencoded, with
//     grant_type=client_credentials
//     claims=<JSON object>   optional; every member is merged into the JWT
//                            payload, replacing what is there (so `sub`,
//                            `aud`, `repository_id`, ... are the caller's
//                            choice; `aud` may be a string or an array).
//                            The provider sets iss, iat, exp (iat+3600), nbf
//                            (iat-10); a `jti` (random UUID) is added when
//                            neither the provider nor `claims` set one. The
//                            caller MAY override any of these through
//                            `claims` (e.g. an expired `exp` for a negative
//                            test); when it does not, the provider's values
//                            stand.
//     omit=<name>[,<name>]   optional; claims removed from the payload after
//                            the merge (e.g. omit=jti for a negative test).
//   Response: 200 {"access_token":"<JWT>","token_type":"Bearer",...};
//             400 {"error":"invalid_request",...} when `claims` is not a JSON
//             object. JWT header: {"typ":"JWT","kid":...,"alg":<ALG>}.

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AssertionError } from 'node:assert';
import { OAuth2Server } from 'oauth2-mock-server';

function fail(message) {
  process.stderr.write(`oidc-provider: ${message}\n`);
  process.exit(1);
}

let args;
try {
  args = parseArgs({
    options: {
      cert: { type: 'string' },
      key: { type: 'string' },
      alg: { type: 'string', default: 'RS256' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
} catch (err) {
  fail(`${err.message}\nusage: node oidc-provider.mjs --cert CERT.pem --key KEY.pem [--alg ALG]`);
}
if (!args.cert || !args.key) {
  fail('--cert and --key are required (HTTPS only)');
}
for (const f of [args.cert, args.key]) {
  if (!existsSync(f)) fail(`no such file: ${f}`);
}

const server = new OAuth2Server(args.key, args.cert);

try {
  await server.issuer.keys.generate(args.alg);
} catch (err) {
  fail(`cannot generate a ${args.alg} signing key: ${err.message}`);
}

// Claims chosen by the caller of POST /token. The service emits this event
// after it has built the payload (iss/iat/exp/nbf, then scope/aud from the
// form) and before it signs. Throwing an AssertionError here makes
// oauth2-mock-server answer 400 invalid_request with our message.
server.service.on('beforeTokenSigning', (token, req) => {
  const body = req.body ?? {};
  if (body.claims !== undefined) {
    if (typeof body.claims !== 'string') {
      throw new AssertionError({ message: "'claims' must be a single form field" });
    }
    let extra;
    try {
      extra = JSON.parse(body.claims);
    } catch (err) {
      throw new AssertionError({ message: `'claims' is not JSON: ${err.message}` });
    }
    if (extra === null || typeof extra !== 'object' || Array.isArray(extra)) {
      throw new AssertionError({ message: "'claims' must be a JSON object" });
    }
    Object.assign(token.payload, extra);
  }
  // The client_credentials grant assigns `scope` and `aud` from the form even
  // when absent; drop such undefined members so they do not linger.
  for (const [k, v] of Object.entries(token.payload)) {
    if (v === undefined) delete token.payload[k];
  }
  if (token.payload.jti === undefined) {
    token.payload.jti = randomUUID();
  }
  if (body.omit !== undefined) {
    if (typeof body.omit !== 'string') {
      throw new AssertionError({ message: "'omit' must be a single form field" });
    }
    for (const name of body.omit.split(',').map((n) => n.trim())) {
      if (name !== '') delete token.payload[name];
    }
  }
});

let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  try {
    if (server.listening) await server.stop();
  } catch (err) {
    process.stderr.write(`oidc-provider: stop failed: ${err.message}\n`);
  }
  process.exit(code);
}
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));
// Live exactly as long as the parent keeps our stdin open.
process.stdin.on('end', () => void shutdown(0));
process.stdin.on('error', () => void shutdown(0));
process.stdin.resume();

try {
  await server.start(0, '127.0.0.1');
} catch (err) {
  fail(`cannot listen on 127.0.0.1: ${err.message}`);
}

const { port } = server.address();
const issuer = server.issuer.url;
if (typeof issuer !== 'string' || issuer === '') {
  fail('oauth2-mock-server did not set an issuer URL');
}
process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
