#!/usr/bin/env node
// sigvault e2e client harness around sigstore-js.
//
//   node client.mjs sign   --fulcio URL --rekor URL --token-file F --bundle OUT [--tsa URL] [--timeout MS] FILE
//   node client.mjs attest --fulcio URL --rekor URL --token-file F --payload-type T --bundle OUT [--tsa URL] [--timeout MS] FILE
//   node client.mjs verify --trusted-root trusted_root.json --bundle B
//                          (--identity-email E | --identity-uri U) --issuer ISS FILE|sha256:HEX
//
// Exit codes: 0 = success ("OK ..." on stdout), 1 = operation failed ("FAIL: ..." on stderr),
//             2 = usage error ("usage error: ..." on stderr).
//
// Verification never uses TUF and never touches the network: the trusted root is
// read from a file and fed to TrustedRoot.fromJSON -> toTrustMaterial -> Verifier.

import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';

const require = createRequire(import.meta.url);
// CommonJS packages: load them with require() so that every export is visible.
const sigstore = require('sigstore'); // sign(), attest()
const { toTrustMaterial, toSignedEntity, Verifier } = require('@sigstore/verify');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');

const INTOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const INTOTO_STATEMENT_TYPES = new Set([
  'https://in-toto.io/Statement/v0.1',
  'https://in-toto.io/Statement/v1',
]);

const USAGE = `usage:
  node client.mjs sign   --fulcio URL --rekor URL --token-file F --bundle OUT [--tsa URL] [--timeout MS] FILE
  node client.mjs attest --fulcio URL --rekor URL --token-file F --payload-type T --bundle OUT [--tsa URL] [--timeout MS] FILE
  node client.mjs verify --trusted-root trusted_root.json --bundle B (--identity-email E | --identity-uri U) --issuer ISS FILE
  node client.mjs --help

sign    sigstore.sign(FILE bytes)  -> messageSignature bundle (Rekor hashedrekord 0.0.1)
attest  sigstore.attest(FILE bytes, payloadType) -> DSSE bundle (Rekor dsse 0.0.1); FILE is the DSSE payload
verify  offline, no TUF: TrustedRoot.fromJSON -> toTrustMaterial -> Verifier.verify(toSignedEntity(bundle, data), policy)
        SAN and issuer must match EXACTLY (the SAN RegExp is anchored and escaped).
        DSSE bundles: the library checks only the PAE signature; this tool additionally requires
          - payloadType application/vnd.in-toto+json: an in-toto Statement with a subject whose
            digest.sha256 equals sha256(FILE), or
          - any other payloadType: payload bytes == FILE bytes.
        FILE may be given as sha256:HEX for DSSE bundles (the message-signature path needs the bytes).

options:
  --fulcio URL         Fulcio base URL (client POSTs URL + /api/v2/signingCert)
  --rekor URL          Rekor base URL (client POSTs URL + /api/v1/log/entries); no trailing slash
  --tsa URL            optional RFC 3161 TSA URL (JSON request); full endpoint URL
  --token-file F       file holding the OIDC JWT (whitespace trimmed); if omitted, env SIGSTORE_ID_TOKEN
  --timeout MS         per-HTTP-request timeout in ms (default 30000; library default is 5000)
  --bundle PATH        bundle to write (sign/attest) or read (verify)
  --payload-type T     DSSE payloadType (attest), e.g. application/vnd.in-toto+json
  --trusted-root PATH  TrustedRoot JSON (protobuf-specs JSON form)
  --identity-email E   expected rfc822Name SAN (exact)
  --identity-uri U     expected URI SAN (exact)
  --issuer ISS         expected OIDC issuer extension value (exact)
`;

class UsageError extends Error {}

function die(code, msg) {
  (code === 0 ? process.stdout : process.stderr).write(msg.endsWith('\n') ? msg : msg + '\n');
  process.exit(code);
}

function parse(argv, spec, required) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: spec, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  for (const r of required) {
    if (values[r] === undefined || values[r] === '') throw new UsageError(`missing required option --${r}`);
  }
  if (positionals.length !== 1) {
    throw new UsageError(`expected exactly one FILE argument, got ${positionals.length}`);
  }
  return { values, file: positionals[0] };
}

function readFileOrFail(path, what) {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${e.code || e.message}`);
  }
}

function readToken(values) {
  let tok;
  if (values['token-file']) {
    tok = readFileOrFail(values['token-file'], 'token file').toString('utf8').trim();
  } else if (process.env.SIGSTORE_ID_TOKEN) {
    tok = process.env.SIGSTORE_ID_TOKEN.trim();
  } else {
    throw new UsageError('missing --token-file (and SIGSTORE_ID_TOKEN is not set)');
  }
  if (tok.split('.').length !== 3) throw new UsageError('identity token is not a JWT (expected 3 dot-separated parts)');
  return tok;
}

function parseTimeout(values) {
  if (values.timeout === undefined) return 30000;
  const n = Number(values.timeout);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--timeout must be a positive integer (ms), got ${values.timeout}`);
  return n;
}

function checkUrl(name, v) {
  let u;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError(`--${name} is not a valid URL: ${v}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${name} must be http(s): ${v}`);
  return v;
}

const SIGN_SPEC = {
  fulcio: { type: 'string' },
  rekor: { type: 'string' },
  tsa: { type: 'string' },
  'token-file': { type: 'string' },
  bundle: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

async function cmdSign(argv, isAttest) {
  const spec = isAttest ? { ...SIGN_SPEC, 'payload-type': { type: 'string' } } : SIGN_SPEC;
  const req = ['fulcio', 'rekor', 'bundle', ...(isAttest ? ['payload-type'] : [])];
  const a = parse(argv, spec, req);
  if (a.help) return die(0, USAGE);
  const { values, file } = a;
  const data = readFileOrFail(file, 'input file');
  const opts = {
    fulcioURL: checkUrl('fulcio', values.fulcio),
    rekorURL: checkUrl('rekor', values.rekor),
    identityToken: readToken(values),
    timeout: parseTimeout(values),
  };
  if (values.tsa) opts.tsaServerURL = checkUrl('tsa', values.tsa);

  const bundle = isAttest
    ? await sigstore.attest(data, values['payload-type'], opts)
    : await sigstore.sign(data, opts);
  writeFileSync(values.bundle, JSON.stringify(bundle, null, 2) + '\n');
  const e = bundle.verificationMaterial?.tlogEntries?.[0];
  const kind = e ? `${e.kindVersion?.kind}/${e.kindVersion?.version} logIndex=${e.logIndex}` : 'no-tlog-entry';
  process.stdout.write(`OK ${isAttest ? 'attest' : 'sign'} ${file} -> ${values.bundle} (${bundle.mediaType}; ${kind})\n`);
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\\/-]/g, '\\$&');
}

// Parse Node's X509Certificate.subjectAltName ("email:a@b, URI:https://x", values
// JSON-quoted when they contain special characters) into [type, value] pairs.
function sanEntries(certDer) {
  const s = new X509Certificate(certDer).subjectAltName || '';
  const out = [];
  let i = 0;
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon < 0) break;
    const type = s.slice(i, colon);
    let j = colon + 1;
    let value;
    if (s[j] === '"') {
      let k = j + 1;
      while (k < s.length && s[k] !== '"') k += s[k] === '\\' ? 2 : 1;
      value = JSON.parse(s.slice(j, k + 1));
      j = k + 1;
    } else {
      const end = s.indexOf(', ', j);
      value = s.slice(j, end < 0 ? s.length : end);
      j = end < 0 ? s.length : end;
    }
    out.push([type, value]);
    if (s.startsWith(', ', j)) j += 2;
    i = j;
  }
  return out;
}

function leafCertDer(bundle) {
  const vm = bundle.verificationMaterial.content;
  switch (vm.$case) {
    case 'certificate':
      return Buffer.from(vm.certificate.rawBytes);
    case 'x509CertificateChain':
      return Buffer.from(vm.x509CertificateChain.certificates[0].rawBytes);
    default:
      return undefined;
  }
}

class CheckError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'CheckError';
    this.code = code;
  }
}

function checkDsseBinding(bundle, fileDigestHex, fileBytes) {
  const env = bundle.content.dsseEnvelope;
  const payload = Buffer.from(env.payload);
  if (env.payloadType === INTOTO_PAYLOAD_TYPE) {
    let stmt;
    try {
      stmt = JSON.parse(payload.toString('utf8'));
    } catch (e) {
      throw new CheckError('DSSE_PAYLOAD_ERROR', `in-toto payload is not JSON: ${e.message}`);
    }
    if (!INTOTO_STATEMENT_TYPES.has(stmt._type)) {
      throw new CheckError('DSSE_PAYLOAD_ERROR', `unexpected in-toto _type ${JSON.stringify(stmt._type)}`);
    }
    const subjects = Array.isArray(stmt.subject) ? stmt.subject : [];
    const hit = subjects.find((s) => typeof s?.digest?.sha256 === 'string' && s.digest.sha256.toLowerCase() === fileDigestHex);
    if (!hit) {
      throw new CheckError('DSSE_SUBJECT_ERROR', `in-toto statement has no subject with sha256 ${fileDigestHex}`);
    }
    return `in-toto subject ${JSON.stringify(hit.name ?? '')} sha256 match, predicateType=${stmt.predicateType}`;
  }
  if (fileBytes === undefined) {
    throw new CheckError('DSSE_PAYLOAD_ERROR', `payloadType ${env.payloadType} is not in-toto; a digest-only input cannot be checked`);
  }
  if (!payload.equals(fileBytes)) {
    throw new CheckError('DSSE_PAYLOAD_ERROR', `DSSE payload (payloadType ${env.payloadType}) differs from the file content`);
  }
  return `payload == file (payloadType ${env.payloadType})`;
}

async function cmdVerify(argv) {
  const spec = {
    'trusted-root': { type: 'string' },
    bundle: { type: 'string' },
    'identity-email': { type: 'string' },
    'identity-uri': { type: 'string' },
    issuer: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  };
  const a = parse(argv, spec, ['trusted-root', 'bundle', 'issuer']);
  if (a.help) return die(0, USAGE);
  const { values, file } = a;
  const email = values['identity-email'];
  const uri = values['identity-uri'];
  if ((email === undefined) === (uri === undefined)) {
    throw new UsageError('exactly one of --identity-email or --identity-uri is required');
  }
  const san = email ?? uri;
  if (san === '') throw new UsageError('empty identity');

  let trustedRootJSON, bundleJSON;
  try {
    trustedRootJSON = JSON.parse(readFileOrFail(values['trusted-root'], 'trusted root').toString('utf8'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`trusted root is not JSON: ${e.message}`);
  }
  try {
    bundleJSON = JSON.parse(readFileOrFail(values.bundle, 'bundle').toString('utf8'));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`bundle is not JSON: ${e.message}`);
  }

  // Input: a file, or sha256:HEX (DSSE only).
  let data, digestHex;
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(file);
  if (m) {
    digestHex = m[1].toLowerCase();
  } else {
    data = readFileOrFail(file, 'input file');
    digestHex = createHash('sha256').update(data).digest('hex');
  }

  const trustedRoot = TrustedRoot.fromJSON(trustedRootJSON); // lenient: missing fields become empty
  for (const k of ['certificateAuthorities', 'tlogs', 'ctlogs']) {
    if (!trustedRoot[k].length) throw new CheckError('TRUSTED_ROOT_ERROR', `trusted root has no ${k}`);
  }
  const trustMaterial = toTrustMaterial(trustedRoot);
  const bundle = bundleFromJSON(bundleJSON); // throws ValidationError on malformed bundles
  const isDsse = bundle.content.$case === 'dsseEnvelope';
  if (!isDsse && data === undefined) {
    throw new UsageError('a message-signature bundle needs the artifact FILE, not a sha256: digest');
  }

  const policy = {
    // Verifier does signerSAN.match(policy.subjectAlternativeName): anchor + escape.
    subjectAlternativeName: new RegExp(`^${escapeRegExp(san)}$`),
    extensions: { issuer: values.issuer }, // compared with !== (exact)
  };
  // DSSE: data is ignored by the library (only the PAE signature is checked).
  const entity = toSignedEntity(bundle, isDsse ? undefined : data);
  const signer = new Verifier(trustMaterial).verify(entity, policy);

  // Belt and braces on the identity: the library reports URI SAN || email SAN and
  // does not care which kind matched. Require the requested kind.
  const der = leafCertDer(bundle);
  if (!der) throw new CheckError('CERTIFICATE_ERROR', 'bundle has no certificate (public-key bundles are not accepted)');
  const wantType = email !== undefined ? 'email' : 'URI';
  const entries = sanEntries(der);
  if (!entries.some(([t, v]) => t === wantType && v === san)) {
    throw new CheckError('UNTRUSTED_SIGNER_ERROR', `certificate has no ${wantType} SAN equal to ${san}; SANs: ${JSON.stringify(entries)}`);
  }
  if (signer.identity?.subjectAlternativeName !== san || signer.identity?.extensions?.issuer !== values.issuer) {
    throw new CheckError('UNTRUSTED_SIGNER_ERROR', 'identity mismatch after verification (unexpected)');
  }

  let detail;
  if (isDsse) {
    detail = checkDsseBinding(bundle, digestHex, data);
  } else {
    const md = bundle.content.messageSignature.messageDigest;
    if (md && md.digest?.length && Buffer.from(md.digest).toString('hex') !== digestHex) {
      throw new CheckError('DIGEST_ERROR', `bundle messageDigest ${Buffer.from(md.digest).toString('hex')} != sha256(file) ${digestHex}`);
    }
    detail = `message signature over sha256 ${digestHex}`;
  }
  const tl = bundle.verificationMaterial.tlogEntries[0];
  const ts = entity.timestamps.map((t) => t.$case).join('+') || 'none';
  process.stdout.write(
    `OK verify ${file} bundle=${values.bundle} (${bundle.mediaType}) ${wantType}=${san} issuer=${values.issuer}; ` +
      `${detail}; tlog=${tl ? `${tl.kindVersion?.kind}/${tl.kindVersion?.version}#${tl.logIndex}` : 'none'}; timestamps=${ts}\n`,
  );
}

function describeError(e) {
  let msg = `${e?.name ?? 'Error'}${e?.code ? ` [${e.code}]` : ''}: ${e?.message ?? String(e)}`;
  for (let c = e?.cause, depth = 0; c && depth < 5; c = c.cause, depth++) {
    msg += `\n  caused by: ${c?.name ?? 'Error'}${c?.code ? ` [${c.code}]` : ''}: ${c?.message ?? String(c)}`;
  }
  // sigstore-js puts the raw token into IDENTITY_TOKEN_PARSE_ERROR messages: redact JWTs.
  return msg.replace(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g, '<redacted-jwt>');
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    return die(cmd === undefined ? 2 : 0, USAGE);
  }
  try {
    switch (cmd) {
      case 'sign':
        return await cmdSign(rest, false);
      case 'attest':
        return await cmdSign(rest, true);
      case 'verify':
        return await cmdVerify(rest);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
  } catch (e) {
    if (e instanceof UsageError) die(2, `usage error: ${e.message}\n(run: node client.mjs --help)`);
    die(1, `FAIL: ${cmd}: ${describeError(e)}`);
  }
}

main();
