import { z } from "zod";
import { defineTransform } from "./registry.ts";

// Example transform: cleans a contacts export. Emails are checked and lower-cased, the full name
// is split, the country code upper-cased, and the signup date must be a real ISO date.
export const contactsNormalize = defineTransform({
  name: "contacts-normalize",
  description: "email,name,country,signup_date -> email,first_name,last_name,country,signup_date",
  input: z.object({
    email: z.email({ message: "not an email address" }),
    name: z.string().trim().min(1, { message: "a name is required" }),
    country: z
      .string()
      .trim()
      .regex(/^[A-Za-z]{2}$/, { message: "must be a two-letter country code" }),
    signup_date: z.iso.date({ message: "must be a date as YYYY-MM-DD" }),
  }),
  columns: ["email", "first_name", "last_name", "country", "signup_date"],
  map(row) {
    const [first, ...rest] = row.name.split(/\s+/);
    return {
      email: row.email.toLowerCase(),
      first_name: first ?? "",
      last_name: rest.join(" "),
      country: row.country.toUpperCase(),
      signup_date: row.signup_date,
    };
  },
});
