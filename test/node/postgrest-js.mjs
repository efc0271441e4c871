// PostgREST's own JavaScript client (@supabase/postgrest-js) against the
// adapter, as a PostgREST user would write it.  Prints one JSON object of
// what it saw; adapter/t/048_adapter_postgrest_js.pl checks it.
//   node postgrest-js.mjs <adapter url> <email> <password> <room id>
import { PostgrestClient } from '@supabase/postgrest-js';

const [url, email, password, roomId] = process.argv.slice(2);
const seen = {};
const anon = new PostgrestClient(url, { retry: false });

const login = await anon.rpc('login', { email, password });
seen.login = { status: login.status, error: login.error, token_type: login.data?.token_type };
const token = login.data?.access_token;
const client = new PostgrestClient(url, { headers: { Authorization: `Bearer ${token}` }, retry: false });

const slot = { room_id: Number(roomId), starts_at: '2031-05-05T09:00:00Z', ends_at: '2031-05-05T10:00:00Z', title: 'js' };
const created = await client.rpc('create_booking', slot);
seen.create_booking = { status: created.status, error: created.error, room_id: created.data?.room_id };

const clash = await client.rpc('create_booking', slot);
seen.clash = { status: clash.status, error: clash.error };

const unauthorised = await anon.rpc('me');
seen.unauthorised = { status: unauthorised.status, error: unauthorised.error };

const get = await client.rpc('list_rooms', { min_capacity: 1 }, { get: true });
seen.get_rpc = { status: get.status, error: get.error, rooms: Array.isArray(get.data) ? get.data.length : null };

const getWrite = await client.rpc('cancel_booking', { id: 1 }, { get: true });
seen.get_rpc_writing = { status: getWrite.status, error: getWrite.error };

const head = await client.rpc('list_rooms', {}, { head: true, count: 'exact' });
seen.head_rpc = { status: head.status, error: head.error, data: head.data };

try {
  await client.rpc('create_booking', slot).throwOnError();
  seen.throw_on_error = { thrown: false };
} catch (e) {
  seen.throw_on_error = { thrown: true, name: e.name, code: e.code, message: e.message, hint: e.hint, details: e.details };
}
console.log(JSON.stringify(seen));
