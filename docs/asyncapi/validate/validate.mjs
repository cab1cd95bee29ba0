// Validates AsyncAPI documents with the official parser (@asyncapi/parser, pinned in
// package-lock.json). Usage: node validate.mjs <file>...
// Prints every diagnostic of severity error (with its path in the document) and exits 1 if a
// document has one or cannot be parsed; prints "ok <file>" for each valid document.
import { Parser, fromFile } from "@asyncapi/parser";

const ERROR = 0; // DiagnosticSeverity.Error (@stoplight/types)

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs <asyncapi.yaml>...");
  process.exit(2);
}

const parser = new Parser();
let failed = false;
for (const file of files) {
  let result;
  try {
    result = await fromFile(parser, file).parse();
  } catch (error) {
    console.error(`${file}: cannot parse: ${error.message}`);
    failed = true;
    continue;
  }
  const errors = result.diagnostics.filter((d) => d.severity === ERROR);
  for (const d of errors) {
    const where = d.path.length ? d.path.join(".") : "(document)";
    console.error(`${file}: error ${d.code}: ${d.message} at ${where}`);
  }
  if (errors.length > 0 || result.document === undefined) {
    failed = true;
    if (errors.length === 0) console.error(`${file}: not a valid AsyncAPI document`);
  } else {
    const warnings = result.diagnostics.length - errors.length;
    console.log(`ok ${file} (AsyncAPI ${result.document.version()}, ${warnings} warnings)`);
  }
}
process.exit(failed ? 1 : 0);
