// docs/api.md from the adapter's /openapi.json (read on stdin): the API
// reference is generated from the one declaration (booking.http_routes and
// the api functions' signatures and COMMENTs), never written by hand.
// adapter/t/050_adapter_openapi.pl fails when docs/api.md differs from what
// this prints; `make api-doc` (with `make run` up) rewrites it.
import { readFileSync } from 'node:fs';

const doc = JSON.parse(readFileSync(0, 'utf8'));
const lines = [];
const say = (s = '') => lines.push(s);
const type = s => !s ? 'any' : s.$ref ? s.$ref.split('/').pop()
  : s.oneOf ? s.oneOf.map(type).join(' or ')
  : s.type === 'array' ? `${type(s.items)}[]` : (s.format ? `${s.type} (${s.format})` : (s.type ?? 'any JSON'));
const cell = s => String(s).replace(/\|/g, '\\|').replace(/\n+/g, ' ');

say('# pg_booking HTTP API reference');
say();
say('Generated from `GET /openapi.json` by `test/node/api-md.mjs` (`make api-doc`); do not edit by hand.');
say('The document is built by the adapter from the rows of `booking.http_routes` and the signatures and');
say('COMMENTs of the `api` functions, so this page, the document and the routes served are one declaration.');
say(`Version ${doc.info.version}. Auth: \`Authorization: Bearer <access token>\` unless a route says public.`);
say('Errors: the envelope `{error_code, message, details, request_id, code, hint}` (see docs/design.md).');
say();
say('| method | path | operationId | auth | success | summary |');
say('|---|---|---|---|---|---|');
const ops = [];
for (const [path, item] of Object.entries(doc.paths)) {
  for (const [method, op] of Object.entries(item)) ops.push({ path, method: method.toUpperCase(), op });
}
for (const { path, method, op } of ops) {
  const ok = Object.keys(op.responses).filter(c => /^2/.test(c)).join(', ');
  const auth = op.security && op.security.length === 0 ? 'public' : 'bearer';
  say(`| ${method} | \`${path}\` | [${op.operationId}](#${op.operationId}) | ${auth} | ${ok} | ${cell(op.summary)} |`);
}
for (const { path, method, op } of ops) {
  say();
  say(`## ${op.operationId}`);
  say();
  say(`\`${method} ${path}\` — ${op.description ?? op.summary}`.replace(/\n\n/g, ' '));
  const params = (op.parameters ?? []).map(p => [p.name, p.in, type(p.schema), p.required ? 'yes' : 'no']);
  const body = op.requestBody?.content?.['application/json']?.schema;
  if (body?.properties) {
    for (const [name, s] of Object.entries(body.properties))
      params.push([name, 'body', type(s), (body.required ?? []).includes(name) ? 'yes' : 'no']);
  } else if (body) {
    params.push(['(the whole body)', 'body', type(body), op.requestBody.required ? 'yes' : 'no']);
  }
  if (params.length) {
    say();
    say('| name | in | type | required |');
    say('|---|---|---|---|');
    for (const p of params) say(`| ${p.map(cell).join(' | ')} |`);
  }
  const content = Object.entries(op.responses).find(([c]) => /^2/.test(c))?.[1]?.content ?? {};
  const answer = content['application/json']?.schema;
  if (answer) {
    say();
    say(`Answers: ${type(answer)} (see [schemas](#schemas)).`);
  }
  // A route that answers text (booking.http_routes.produces): its media type.
  for (const media of Object.keys(content).filter(m => m !== 'application/json')) {
    say();
    say(`Answers: \`${media}\` text.`);
  }
}
const schemas = Object.entries(doc.components?.schemas ?? {}).filter(([n]) => !['Error', 'Result'].includes(n));
if (schemas.length) {
  say();
  say('## schemas');
  say();
  say('What a route answers on success, declared in `booking.http_schemas` and `booking.http_results`');
  say('(objects may carry more members in a later version). A member marked "or null" may be null.');
  for (const [name, s] of schemas) {
    say();
    say(`### ${name}`);
    say();
    say(s.description ?? '');
    say();
    say('| member | type |');
    say('|---|---|');
    for (const [m, ms] of Object.entries(s.properties ?? {}))
      say(`| ${m} | ${cell(type(ms) + (ms.nullable ? ' or null' : ''))} |`);
  }
}
process.stdout.write(lines.join('\n') + '\n');
