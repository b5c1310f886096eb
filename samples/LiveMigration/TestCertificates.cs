// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.IO;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using DirtyLog.Migration.Transport;

namespace DirtyLog.Samples.LiveMigration;

/// <summary>
/// <c>certs --out DIR</c>: a throwaway CA and two certificates it issues, so that a newcomer can try the TLS channel in
/// a minute: <c>destination.pem</c> for <c>localhost</c> and 127.0.0.1, <c>source.pem</c> for <c>CN=source-1</c>.
/// Production uses its own PKI; these keys are written unencrypted.
/// </summary>
internal static class TestCertificates
{
    public static int Write(string directory)
    {
        Directory.CreateDirectory(directory);
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=DirtyLog sample CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using X509Certificate2 ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        File.WriteAllText(Path.Combine(directory, "ca.pem"), ca.ExportCertificatePem());
        Issue(ca, "CN=destination", server: true, Path.Combine(directory, "destination"));
        Issue(ca, "CN=source-1", server: false, Path.Combine(directory, "source"));
        Console.WriteLine($"""
            wrote {directory}/ca.pem, destination.pem/.key (localhost, 127.0.0.1), source.pem/.key (CN=source-1): test certificates, use your own PKI in production
              listen --port 4444 --connections 4 --tls-cert {directory}/destination.pem --tls-key {directory}/destination.key --tls-ca {directory}/ca.pem --tls-allow CN=source-1
              send --host localhost --port 4444 --connections 4 --tls-cert {directory}/source.pem --tls-key {directory}/source.key --tls-ca {directory}/ca.pem
            """);
        return 0;
    }

    /// <summary>The first file <see cref="Write"/> writes that <paramref name="directory"/> lacks, or <see langword="null"/>.</summary>
    public static string? Missing(string directory) =>
        Array.Find(Files, f => !File.Exists(Path.Combine(directory, f)));

    /// <summary>Both sides' TLS options from a directory <see cref="Write"/> filled: the source allowed by its subject, the destination by its name.</summary>
    public static (MigrationTlsOptions Source, MigrationTlsOptions Destination) Load(string directory)
    {
        string at(string file) => Path.Combine(directory, file);
        MigrationTlsOptions source = MigrationTlsOptions.FromPemFiles(at("source.pem"), at("source.key"), at("ca.pem")) with { ServerName = "localhost" };
        MigrationTlsOptions destination = MigrationTlsOptions.FromPemFiles(at("destination.pem"), at("destination.key"), at("ca.pem")) with { AllowedSubjects = ["CN=source-1"] };
        return (source, destination);
    }

    private static readonly string[] Files = ["ca.pem", "destination.pem", "destination.key", "source.pem", "source.key"];

    private static void Issue(X509Certificate2 ca, string subject, bool server, string pathWithoutExtension)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(server ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        if (server)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName("localhost");
            names.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
        }

        using X509Certificate2 certificate = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(90), RandomNumberGenerator.GetBytes(12));
        File.WriteAllText(pathWithoutExtension + ".pem", certificate.ExportCertificatePem());
        File.WriteAllText(pathWithoutExtension + ".key", key.ExportPkcs8PrivateKeyPem());
    }
}
