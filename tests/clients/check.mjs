// Client libraries nobody here wrote check what the token-service issues and publishes, through
// a running stack (Envoy with the filter, token-service; started by the e2e test
// tests/tests/e2e/real_clients.rs, which runs this script and reads what it prints):
//
// - openid-client (`discovery`) finds the route's metadata where RFC 8414 §3.1 puts it
//   (`algorithm: 'oauth2'`) and where OpenID Connect Discovery puts it (`'oidc'`), then obtains
//   a token with client_credentials from the discovered token endpoint;
// - jose's `jwtVerify` verifies the access JWTs against the published JWKS (`createRemoteJWKSet`);
// - oauth4webapi's `validateJwtAccessToken` applies RFC 9068's resource-server rules (typ,
//   iss, aud, exp, iat, sub, jti, client_id, the signature by a key of the issuer's jwks_uri);
// - tampered and forged tokens are refused by both libraries;
// - introspection and revocation (RFC 7662, RFC 7009) through openid-client work on a JWT, and
//   the filter refuses the revoked JWT.
//
// Input (environment): ISSUER (the route's issuer, e.g. https://127.0.0.1:8443/stepon),
// CLIENT_ID, CLIENT_SECRET, SCOPE, ACCESS_TOKEN (a JWT the test obtained through Envoy),
// RESOURCE_URL (a URL the filter protects), REVOKE_DEADLINE_MS. HTTPS is checked: the test
// passes the stack's self-signed certificate in NODE_EXTRA_CA_CERTS.
// Output: one line per check, `ok NAME: detail` or `FAIL NAME: error`, then a JSON line
// `{"results": {...}, "versions": {...}}`. Exit status 0 only when every check passed.

import { readFileSync } from 'node:fs'
import * as jose from 'jose'
import * as oauth from 'oauth4webapi'
import * as client from 'openid-client'

const env = (name) => {
  const value = process.env[name]
  if (!value) {
    console.error(`check.mjs: ${name} is not set`)
    process.exit(2)
  }
  return value
}

const ISSUER = env('ISSUER')
const CLIENT_ID = env('CLIENT_ID')
const CLIENT_SECRET = env('CLIENT_SECRET')
const SCOPE = env('SCOPE')
const ACCESS_TOKEN = env('ACCESS_TOKEN')
const RESOURCE_URL = env('RESOURCE_URL')
const REVOKE_DEADLINE_MS = Number(process.env.REVOKE_DEADLINE_MS ?? '5000')
const ALGORITHMS = ['RS256', 'ES256', 'EdDSA']

const results = {}

async function check(name, run) {
  try {
    const detail = await run()
    results[name] = { ok: true, detail: detail ?? '' }
    console.log(`ok ${name}: ${detail ?? ''}`)
  } catch (error) {
    results[name] = { ok: false, error: `${error?.name}: ${error?.message}` }
    const cause = error?.cause?.message ?? error?.cause?.code ?? (error?.cause ? JSON.stringify(error.cause) : '')
    console.log(`FAIL ${name}: ${error?.name}: ${error?.message}${cause ? ` (cause: ${cause})` : ''}`)
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message)
}

// Resolves when `run` rejects with error code `code` and a message matching `why` (the library
// refused the token for that reason), after the same library accepted the genuine token in
// `control`: a refusal counts only where acceptance was shown, so a broken setup cannot pass.
async function refused(control, code, why, run) {
  assert(results[control]?.ok, `no refusal without its control: "${control}" did not pass`)
  try {
    await run()
  } catch (error) {
    const got = error.code ?? error.name
    assert(got === code && why.test(error.message), `refused, but with ${got} (${error.message}), not ${code} ${why}`)
    return `${got}: ${error.message}`
  }
  throw new Error('accepted')
}

const b64url = (text) => Buffer.from(text).toString('base64url')

// The same JWT with one character of its signature changed.
function tamperedSignature(jwt) {
  const [h, p, s] = jwt.split('.')
  const flipped = (s[10] === 'A' ? 'B' : 'A')
  return `${h}.${p}.${s.slice(0, 10)}${flipped}${s.slice(11)}`
}

// Other claims (another sub) under the original signature.
function tamperedClaims(jwt) {
  const [h, p, s] = jwt.split('.')
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString())
  claims.sub = 'someone-else'
  return `${h}.${b64url(JSON.stringify(claims))}.${s}`
}

// An unsigned token (alg "none") with the original claims.
function unsigned(jwt) {
  const [, p] = jwt.split('.')
  return `${b64url(JSON.stringify({ alg: 'none', typ: 'at+jwt' }))}.${p}.`
}

// RFC 9068 §2.2 claims with the values docs/jwt-access-tokens.md §2 gives them.
function checkClaims(payload, header) {
  assert(header.typ === 'at+jwt', `typ ${header.typ}`)
  assert(ALGORITHMS.includes(header.alg), `alg ${header.alg}`)
  assert(typeof header.kid === 'string' && header.kid.length > 0, 'no kid')
  assert(payload.iss === ISSUER, `iss ${payload.iss}`)
  assert(payload.aud === ISSUER || (Array.isArray(payload.aud) && payload.aud.includes(ISSUER)), `aud ${payload.aud}`)
  assert(payload.client_id === CLIENT_ID, `client_id ${payload.client_id}`)
  assert(payload.sub === CLIENT_ID, `sub ${payload.sub} (client_credentials: the client)`)
  assert(payload.scope === SCOPE, `scope ${payload.scope}`)
  assert(typeof payload.jti === 'string' && payload.jti.length > 0, 'no jti')
  assert(Number.isInteger(payload.iat) && Number.isInteger(payload.exp) && payload.exp > payload.iat, 'iat/exp')
  assert(payload.consumer && typeof payload.consumer.id === 'string', 'no consumer.id')
  assert(typeof payload.credential_id === 'string', 'no credential_id')
  return `kid ${header.kid}, alg ${header.alg}, sub ${payload.sub}, scope ${payload.scope}, exp-iat ${payload.exp - payload.iat} s`
}

const issuerUrl = new URL(ISSUER)
let oauth2Config
let oidcConfig
let jwks
let asMetadata
let minted

await check('openid-client discovery, algorithm oauth2 (RFC 8414 §3.1 location)', async () => {
  oauth2Config = await client.discovery(issuerUrl, CLIENT_ID, CLIENT_SECRET, undefined, { algorithm: 'oauth2' })
  const m = oauth2Config.serverMetadata()
  assert(m.issuer === ISSUER, `issuer ${m.issuer}`)
  assert(m.jwks_uri === `${ISSUER}/.well-known/jwks.json`, `jwks_uri ${m.jwks_uri}`)
  assert(m.token_endpoint === `${ISSUER}/oauth2/token`, `token_endpoint ${m.token_endpoint}`)
  return `issuer ${m.issuer}, jwks_uri ${m.jwks_uri}`
})

await check('openid-client discovery, algorithm oidc (openid-configuration)', async () => {
  oidcConfig = await client.discovery(issuerUrl, CLIENT_ID, CLIENT_SECRET)
  const m = oidcConfig.serverMetadata()
  assert(m.issuer === ISSUER, `issuer ${m.issuer}`)
  assert(m.jwks_uri === `${ISSUER}/.well-known/jwks.json`, `jwks_uri ${m.jwks_uri}`)
  return `issuer ${m.issuer}, token_endpoint ${m.token_endpoint}`
})

await check('oauth4webapi discovery, algorithm oauth2', async () => {
  const response = await oauth.discoveryRequest(issuerUrl, { algorithm: 'oauth2' })
  asMetadata = await oauth.processDiscoveryResponse(issuerUrl, response)
  assert(asMetadata.jwks_uri, 'no jwks_uri')
  jwks = jose.createRemoteJWKSet(new URL(asMetadata.jwks_uri))
  return `jwks_uri ${asMetadata.jwks_uri}`
})

await check('openid-client clientCredentialsGrant (discovered token endpoint)', async () => {
  const tokens = await client.clientCredentialsGrant(oauth2Config ?? oidcConfig, { scope: SCOPE })
  assert(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`)
  assert(tokens.access_token.split('.').length === 3, 'the access token is not a JWS')
  minted = tokens.access_token
  return `a JWT of ${minted.length} bytes, expires_in ${tokens.expires_in}`
})

for (const [which, token] of [['the test\'s token', ACCESS_TOKEN], ['openid-client\'s token', () => minted]]) {
  await check(`jose jwtVerify, ${which}`, async () => {
    const jwt = typeof token === 'function' ? token() : token
    assert(jwt, 'no token')
    const { payload, protectedHeader } = await jose.jwtVerify(jwt, jwks, {
      issuer: ISSUER, audience: ISSUER, typ: 'at+jwt', algorithms: ALGORITHMS, requiredClaims: ['exp', 'iat', 'jti', 'sub'],
    })
    return checkClaims(payload, protectedHeader)
  })
  await check(`oauth4webapi validateJwtAccessToken (RFC 9068), ${which}`, async () => {
    const jwt = typeof token === 'function' ? token() : token
    assert(jwt, 'no token')
    const request = new Request(RESOURCE_URL, { headers: { authorization: `Bearer ${jwt}` } })
    const claims = await oauth.validateJwtAccessToken(asMetadata, request, ISSUER, { signingAlgorithms: ALGORITHMS })
    assert(claims.client_id === CLIENT_ID && claims.iss === ISSUER, 'claims')
    return `jti ${claims.jti}`
  })
}

// Built inside each check: a malformed input token fails its checks, not the script. Each with
// the error codes that say why each library refuses it.
const JOSE = "jose jwtVerify, the test's token"
const O4W = "oauth4webapi validateJwtAccessToken (RFC 9068), the test's token"
const forgeries = [
  ['a changed signature', tamperedSignature, ['ERR_JWS_SIGNATURE_VERIFICATION_FAILED', /signature/],
    ['OAUTH_INVALID_RESPONSE', /signature verification failed/]],
  ['changed claims', tamperedClaims, ['ERR_JWS_SIGNATURE_VERIFICATION_FAILED', /signature/],
    ['OAUTH_INVALID_RESPONSE', /signature verification failed/]],
  ['alg none', unsigned, ['ERR_JOSE_ALG_NOT_ALLOWED', /alg/], ['OAUTH_INVALID_RESPONSE', /"alg"/]],
]
for (const [what, forge, [joseCode, joseWhy], [o4wCode, o4wWhy]] of forgeries) {
  await check(`jose jwtVerify refuses ${what}`, () => refused(JOSE, joseCode, joseWhy, () =>
    jose.jwtVerify(forge(ACCESS_TOKEN), jwks, { issuer: ISSUER, audience: ISSUER, typ: 'at+jwt', algorithms: ALGORITHMS })))
  await check(`oauth4webapi validateJwtAccessToken refuses ${what}`, () => refused(O4W, o4wCode, o4wWhy, () =>
    oauth.validateJwtAccessToken(asMetadata, new Request(RESOURCE_URL, { headers: { authorization: `Bearer ${forge(ACCESS_TOKEN)}` } }), ISSUER)))
}
await check('jose jwtVerify refuses another audience', () => refused(JOSE, 'ERR_JWT_CLAIM_VALIDATION_FAILED', /"aud"/, () =>
  jose.jwtVerify(ACCESS_TOKEN, jwks, { issuer: ISSUER, audience: `${ISSUER}-other`, algorithms: ALGORITHMS })))
await check('oauth4webapi validateJwtAccessToken refuses another audience', () => refused(O4W, 'OAUTH_JWT_CLAIM_COMPARISON_FAILED', /"aud"/, () =>
  oauth.validateJwtAccessToken(asMetadata, new Request(RESOURCE_URL, { headers: { authorization: `Bearer ${ACCESS_TOKEN}` } }), `${ISSUER}-other`)))

await check('openid-client fetchProtectedResource through the filter', async () => {
  const response = await client.fetchProtectedResource(oauth2Config, minted, new URL(RESOURCE_URL), 'GET')
  assert(response.status === 200, `status ${response.status}: ${await response.text()}`)
  return 'status 200'
})

await check('openid-client tokenIntrospection of a JWT (RFC 7662)', async () => {
  const answer = await client.tokenIntrospection(oauth2Config, minted)
  assert(answer.active === true, `active ${answer.active}`)
  assert(answer.client_id === CLIENT_ID, `client_id ${answer.client_id}`)
  return `active, scope ${answer.scope}`
})

await check('openid-client tokenRevocation of a JWT (RFC 7009), then inactive and refused', async () => {
  await client.tokenRevocation(oauth2Config, minted)
  // With several token-service replicas, the one answering the introspection learns of a
  // revocation made through another from the change feed (docs/replicas.md): inactive
  // within the bound (RFC 7009 §2 allows the propagation), not necessarily at once.
  const revoked = Date.now()
  let answer
  do {
    answer = await client.tokenIntrospection(oauth2Config, minted)
    if (answer.active === false) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  } while (Date.now() - revoked < REVOKE_DEADLINE_MS)
  assert(answer.active === false, `still active ${REVOKE_DEADLINE_MS} ms after revocation: ${JSON.stringify(answer)}`)
  const inactiveAfter = Date.now() - revoked
  // The filter learns of the revocation through its state poll: refused within the bound.
  const started = Date.now()
  let status
  while (Date.now() - started < REVOKE_DEADLINE_MS) {
    try {
      const response = await client.fetchProtectedResource(oauth2Config, minted, new URL(RESOURCE_URL), 'GET')
      status = response.status
      await response.arrayBuffer()
    } catch (error) {
      // openid-client throws on a 401 with a Bearer challenge (RFC 6750 §3): the refusal.
      const challenge = error instanceof client.WWWAuthenticateChallengeError ? error.cause?.[0] : undefined
      if (challenge?.scheme === 'bearer' && challenge.parameters?.error === 'invalid_token' && error.response?.status === 401) {
        return `introspection inactive after ${inactiveAfter} ms; the filter refused it (401 invalid_token) ${Date.now() - started} ms later`
      }
      throw error
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`the filter still answered ${status} ${REVOKE_DEADLINE_MS} ms after the revocation`)
})

// The versions that ran (package-lock.json pins them; the report names them).
const versions = Object.fromEntries(['jose', 'oauth4webapi', 'openid-client'].map((name) => {
  const file = new URL(`./node_modules/${name}/package.json`, import.meta.url)
  return [name, JSON.parse(readFileSync(file, 'utf8')).version]
}))
console.log(JSON.stringify({ results, versions, node: process.version }))
process.exit(Object.values(results).every((r) => r.ok) ? 0 : 1)
