// Validate real answers of the adapter against the success schemas its
// OpenAPI document declares, with Ajv (the JSON Schema validator most of
// the OpenAPI tools use).  Arguments: the document (a file) and a file of
// samples, a JSON array of {method, path, status, body} where path is the
// document's path template ("/bookings/{id}").  Prints one JSON line
// {checked, undeclared, failures} and exits 1 when a sample fails.
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';

const doc = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const samples = JSON.parse(readFileSync(process.argv[3], 'utf8'));
// nullable is OpenAPI 3.0's, which Ajv knows; the document's own keywords
// (components) are not JSON Schema's, hence strict: false.
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ components: doc.components }, 'doc');

const out = { checked: 0, undeclared: [], failures: [] };
for (const s of samples) {
  const name = `${s.method} ${s.path} ${s.status}`;
  const schema = doc.paths?.[s.path]?.[s.method.toLowerCase()]?.responses?.[String(s.status)]
    ?.content?.['application/json']?.schema;
  if (!schema) {
    out.undeclared.push(name);
    continue;
  }
  // "#/components/..." in the document resolves against the document.
  const rebased = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"doc#/components/'));
  const validate = ajv.compile(rebased);
  out.checked++;
  if (!validate(s.body))
    out.failures.push({ sample: name, errors: validate.errors.map(e => `${e.instancePath || '/'} ${e.message}`) });
}
console.log(JSON.stringify(out));
process.exit(out.failures.length ? 1 : 0);
