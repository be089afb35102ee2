// A local OpenID Connect provider for tests and the development stack, built on the
// third-party oauth2-mock-server package: it serves discovery and JWKS, and its token endpoint
// mints signed JWTs. Extra claims come from the token request's `claims` form field (JSON;
// a null value removes a claim), so tests can shape tokens like Dex's or GitHub Actions'.
//
//   node idp.mjs [PORT] [ALG]      prints {"issuer": "...", "port": N} once listening
//
// Mint a token:  curl -s -d grant_type=client_credentials \
//                     --data-urlencode 'claims={"aud":"sigstore","sub":"...","email":"..."}' \
//                     http://127.0.0.1:PORT/token | jq -r .access_token
import { OAuth2Server, Events } from 'oauth2-mock-server';

const port = Number(process.argv[2] ?? 0);
const alg = process.argv[3] ?? 'RS256';
const server = new OAuth2Server();
await server.issuer.keys.generate(alg);

server.service.on(Events.BeforeTokenSigning, (token, req) => {
  const raw = req.body?.claims;
  if (!raw) return;
  const claims = JSON.parse(raw);
  for (const [k, v] of Object.entries(claims)) {
    if (v === null) delete token.payload[k];
    else token.payload[k] = v;
  }
});

await server.start(port, '127.0.0.1');
const actual = server.address().port;
// Use the loopback address in the issuer URL so it is the same string everywhere.
server.issuer.url = `http://127.0.0.1:${actual}`;
console.log(JSON.stringify({ issuer: server.issuer.url, port: actual }));

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
