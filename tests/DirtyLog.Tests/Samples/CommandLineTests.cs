// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics;
using System.IO;
using System.Threading.Tasks;
using DirtyLog.Samples.LiveMigration;
using NUnit.Framework;

namespace DirtyLog.Tests.Samples;

/// <summary>The sample's command line: help, and every bad input refused with a message before any work starts.</summary>
[TestFixture]
public class CommandLineTests
{
    private static async Task<(int Code, string Output, string Error, TimeSpan Took)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        long started = Stopwatch.GetTimestamp();
        int code = await SampleCommandLine.RunAsync(args, output, error);
        return (code, output.ToString(), error.ToString(), Stopwatch.GetElapsedTime(started));
    }

    [TestCase("--help")]
    [TestCase("-h")]
    [TestCase("listen", "--help")]
    public async Task HelpPrintsTheOptionsAndExitsZero(params string[] args)
    {
        (int code, string output, _, _) = await Run(args);
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.Zero);
            Assert.That(output, Does.Contain("Usage:").And.Contain("--rate").And.Contain("--downtime-ms"));
        });
    }

    [TestCase(new[] { "--rate", "abc" }, "Cannot parse argument 'abc'")]
    [TestCase(new[] { "--rate", "-5" }, "--rate must be at least 0")]
    [TestCase(new[] { "--guest-mib", "1" }, "--guest-mib must be at least 2")]
    [TestCase(new[] { "--downtime-ms", "0" }, "--downtime-ms must be more than 0")]
    [TestCase(new[] { "--shrink-to", "1.5" }, "--shrink-to must be a fraction from 0 to 1")]
    [TestCase(new[] { "--dirty-ring", "1000" }, "--dirty-ring must be 0 or a power of two")]
    [TestCase(new[] { "--chart", "/nonexistent-dirtylog-folder/rounds.png" }, "--chart /nonexistent-dirtylog-folder/rounds.png: cannot write there")]
    [TestCase(new[] { "--csv", "/proc/version" }, "--csv /proc/version: cannot write there")]
    [TestCase(new[] { "listen", "--insecure", "--port", "70000" }, "--port must be from 1 to 65535")]
    [TestCase(new[] { "listen", "--insecure" }, "--port")]
    [TestCase(new[] { "send", "--port", "5000" }, "--host")]
    [TestCase(new[] { "listen", "--port", "5000" }, "or --insecure to accept anyone in the clear")]
    [TestCase(new[] { "listen", "--port", "5000", "--tls-cert", "/proc/version" }, "TLS needs --tls-cert, --tls-key and --tls-ca together")]
    [TestCase(new[] { "send", "--host", "h", "--port", "5000", "--tls-cert", "/x.pem", "--tls-key", "/x.key", "--tls-ca", "/ca.pem" }, "/x.pem: no such file")]
    [TestCase(new[] { "listen", "--port", "5000", "--tls-cert", "/proc/version", "--tls-key", "/proc/version", "--tls-ca", "/proc/version" }, "--tls-allow names the source subjects")]
    [TestCase(new[] { "--postcopy" }, "--postcopy pushes pages on data connections of their own")]
    [TestCase(new[] { "listen", "--insecure", "--port", "5000", "--postcopy" }, "--postcopy pushes pages on data connections of their own")]
    [TestCase(new[] { "--no-such-option" }, "--no-such-option")]
    public async Task BadInputIsAnErrorMessageBeforeAnyWorkStarts(string[] args, string message)
    {
        (int code, _, string error, TimeSpan took) = await Run(args);
        Assert.Multiple(() =>
        {
            Assert.That(code, Is.EqualTo(1), "exit code 1, no exception");
            Assert.That(error, Does.Contain(message));
            Assert.That(took, Is.LessThan(TimeSpan.FromSeconds(10)), "refused before a VM is created or a migration run");
        });
    }

    [Test]
    public async Task ARefusedChartPathLeavesNoFileBehindAndAGoodOneIsNotCreatedBeforeTheRun()
    {
        string folder = Directory.CreateTempSubdirectory("dirtylog-cli-").FullName;
        try
        {
            string chart = Path.Combine(folder, "rounds.png");
            (int code, _, _, _) = await Run("--rate", "-1", "--chart", chart);
            Assert.Multiple(() =>
            {
                Assert.That(code, Is.EqualTo(1));
                Assert.That(File.Exists(chart), Is.False, "the writability probe removes what it created");
            });
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
