import type { Argv } from "yargs";

/**
 * The image commands: pull, push, images, tag, rmi, inspect, history, save, load, login,
 * logout. Their code (and the registry client) is loaded only when one of them runs.
 */
type Handler = (args: Record<string, unknown>) => Promise<number>;
type RunName = "runPull" | "runPush" | "runImages" | "runTag" | "runRmi" | "runInspect" | "runHistory" | "runSave" | "runLoad" | "runLogin" | "runLogout";

async function run(name: RunName, args: object): Promise<void> {
  const module = await import("./images-run.ts");
  process.exitCode = await (module[name] as Handler)(args as Record<string, unknown>);
}

const platformOption = { type: "string", describe: "The platform to pull, e.g. linux/arm64 (default: this machine's)" } as const;

export const imageCommands = {
  pull: {
    command: "pull <name>",
    describe: "Pull an image from a registry into the local image store",
    builder: (yargs: Argv) =>
      yargs
        .positional("name", { type: "string", demandOption: true, describe: "The image: NAME[:TAG|@DIGEST], e.g. alpine:3.20" })
        .option("platform", platformOption)
        .option("quiet", { alias: "q", type: "boolean", default: false, describe: "Print only the image name" }),
    handler: (args: object) => run("runPull", args),
  },
  push: {
    command: "push <name>",
    describe: "Push an image of the local image store to its registry",
    builder: (yargs: Argv) =>
      yargs
        .positional("name", { type: "string", demandOption: true, describe: "The stored image's name (its registry is the name's first part)" })
        .option("quiet", { alias: "q", type: "boolean", default: false, describe: "Print only the pushed digest" }),
    handler: (args: object) => run("runPush", args),
  },
  images: {
    command: "images [name]",
    describe: "List the images in the local image store",
    builder: (yargs: Argv) =>
      yargs
        .positional("name", { type: "string", describe: "Only images of this repository (NAME or NAME:TAG)" })
        .option("quiet", { alias: "q", type: "boolean", default: false, describe: "Print only image ids" })
        .option("digests", { type: "boolean", default: false, describe: "Show manifest digests" })
        .option("no-trunc", { type: "boolean", default: false, describe: "Show whole ids" })
        .option("format", { choices: ["table", "json"] as const, default: "table" as const, describe: "Output format (json: one object per line)" }),
    handler: (args: object) => run("runImages", args),
  },
  tag: {
    command: "tag <source> <target>",
    describe: "Give a stored image another name",
    builder: (yargs: Argv) =>
      yargs
        .positional("source", { type: "string", demandOption: true, describe: "A stored image: name or id" })
        .positional("target", { type: "string", demandOption: true, describe: "The new name: NAME[:TAG]" }),
    handler: (args: object) => run("runTag", args),
  },
  rmi: {
    command: "rmi <names..>",
    describe: "Remove image names from the local image store, and the blobs no other name needs",
    builder: (yargs: Argv) =>
      yargs
        .positional("names", { type: "string", array: true, demandOption: true, describe: "Names or ids" })
        .option("force", { alias: "f", type: "boolean", default: false, describe: "Remove every name of an image given by id" }),
    handler: (args: object) => run("runRmi", args),
  },
  inspect: {
    command: "inspect <names..>",
    describe: "Show stored images' details as JSON",
    builder: (yargs: Argv) =>
      yargs
        .positional("names", { type: "string", array: true, demandOption: true, describe: "Names or ids" })
        .option("platform", { type: "string", describe: "Which platform of a multi-platform image" }),
    handler: (args: object) => run("runInspect", args),
  },
  history: {
    command: "history <name>",
    describe: "Show how a stored image was built, step by step",
    builder: (yargs: Argv) =>
      yargs
        .positional("name", { type: "string", demandOption: true, describe: "Name or id" })
        .option("no-trunc", { type: "boolean", default: false, describe: "Show whole commands" })
        .option("format", { choices: ["table", "json"] as const, default: "table" as const, describe: "Output format (json: one object per line)" }),
    handler: (args: object) => run("runHistory", args),
  },
  save: {
    command: "save <names..>",
    describe: "Write stored images to a tar archive (docker save format, or OCI)",
    builder: (yargs: Argv) =>
      yargs
        .positional("names", { type: "string", array: true, demandOption: true, describe: "Names or ids" })
        .option("output", { alias: "o", type: "string", describe: "The archive file (default: standard output, if it is not a terminal)" })
        .option("format", { choices: ["docker", "oci"] as const, default: "docker" as const, describe: "docker: loadable by docker load; oci: an OCI image layout tar" }),
    handler: (args: object) => run("runSave", args),
  },
  load: {
    command: "load",
    describe: "Load images from a tar archive (docker save or OCI) into the local image store",
    builder: (yargs: Argv) =>
      yargs
        .option("input", { alias: "i", type: "string", describe: "The archive file (default: standard input)" })
        .option("quiet", { alias: "q", type: "boolean", default: false, describe: "Print only the loaded names" }),
    handler: (args: object) => run("runLoad", args),
  },
  login: {
    command: "login [server]",
    describe: "Log in to a registry (credentials go to the docker config, as docker login writes them)",
    builder: (yargs: Argv) =>
      yargs
        .positional("server", { type: "string", describe: "The registry host[:port] (default: docker.io)" })
        .option("username", { alias: "u", type: "string", describe: "User name" })
        .option("password", { alias: "p", type: "string", describe: "Password or token (prefer --password-stdin: a command line is visible to other users)" })
        .option("password-stdin", { type: "boolean", default: false, describe: "Read the password from standard input" }),
    handler: (args: object) => run("runLogin", args),
  },
  logout: {
    command: "logout [server]",
    describe: "Remove the stored credentials of a registry",
    builder: (yargs: Argv) => yargs.positional("server", { type: "string", describe: "The registry host[:port] (default: docker.io)" }),
    handler: (args: object) => run("runLogout", args),
  },
};
